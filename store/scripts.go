package store

import "github.com/redis/go-redis/v9"

// luaParse reads a record envelope (see codec.go) in Lua. After it runs:
// v is the value (or false), state, and for live records: uses, exhausted,
// created, ttl, maxu, grace, idle, and tomb(state) builds a tombstone.
const luaParse = `
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
local state = string.byte(v, 2)
if state == 1 then return {2} end
if state == 2 then return {3} end
local flags = string.byte(v, 3)
local function has(f) return math.floor(flags / f) % 2 == 1 end
local function u32(p) local a, b, c, d = string.byte(v, p, p + 3); return ((a * 256 + b) * 256 + c) * 256 + d end
local pos = 4
local uses, exhausted = 0, 0
if has(1) then uses = u32(4); exhausted = u32(8); pos = 12 end
local function uvarint()
  local x, mul = 0, 1
  while true do
    local b = string.byte(v, pos)
    pos = pos + 1
    x = x + (b % 128) * mul
    if b < 128 then return x end
    mul = mul * 128
  end
end
local created = uvarint()
local ttl = uvarint()
local maxu, grace, idle = 0, 0, 0
if has(1) then maxu = uvarint() end
if has(2) then grace = uvarint() end
if has(4) then idle = uvarint() end
if has(16) then uvarint() end
if has(32) then uvarint() end
local kpos = pos
local klen = uvarint()
local function tomb(st) return string.char(2, st, 0) .. string.sub(v, kpos, pos + klen - 1) end
local now = tonumber(ARGV[1])
local expires = created + ttl
if now >= expires then return {0} end
local function p32(n) return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256) end
-- spent: the uses ran out and any grace after the last one is over.
local spent = maxu > 0 and uses >= maxu and not (exhausted > 0 and now <= created + exhausted - 1 + grace)
`

// consume is one use of a token: {0} none, {2} used, {3} revoked, or
// {1, value, uses} after counting the use and sliding the idle expiry.
// KEYS[1] the record, ARGV[1] now in Unix ms.
var consume = redis.NewScript(luaParse + `
if spent then
  redis.call('SET', KEYS[1], tomb(1), 'KEEPTTL')
  return {2}
end
if maxu > 0 and uses < maxu then
  uses = uses + 1
  if uses < maxu or grace > 0 then
    redis.call('SETRANGE', KEYS[1], 3, p32(uses))
    if uses == maxu then redis.call('SETRANGE', KEYS[1], 7, p32(now - created + 1)) end
  else
    redis.call('SET', KEYS[1], tomb(1), 'KEEPTTL')
  end
end
if idle > 0 then redis.call('PEXPIRE', KEYS[1], math.min(idle, expires - now)) end
return {1, v, uses}
`)

// take ends a live token and returns it, for a refresh: {0}, {2}, {3} as
// consume, or {1, value}. KEYS[1] the record, ARGV[1] now in Unix ms.
var take = redis.NewScript(luaParse + `
if spent then return {2} end
redis.call('SET', KEYS[1], tomb(2), 'KEEPTTL')
return {1, v}
`)

// revoke turns a live token into a revoked tombstone: {0} none, {2} used
// already, {3} revoked already, {1} revoked now. KEYS[1], ARGV[1] as above.
var revoke = redis.NewScript(luaParse + `
redis.call('SET', KEYS[1], tomb(2), 'KEEPTTL')
return {1}
`)

// scripts are loaded together when a pipeline finds one missing.
var scripts = []*redis.Script{consume, take, revoke}
