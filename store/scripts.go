package store

import "github.com/redis/go-redis/v9"

// The record scripts share this prelude, which reads a record envelope
// (see codec.go) in Lua. KEYS[1] is the record; ARGV[1] is now in Unix ms;
// ARGV[2] is the name of the record's epoch keys up to the key id
// ("<prefix>{g}e:"), in the record's own hash slot. After it:
//
//   - no record, or an expired one: the script has returned {0};
//   - a tombstone: it has returned {2, v} (used) or {3, v} (revoked);
//   - otherwise v, uses, exhausted, created, ttl, maxu, grace, idle and
//     expires are set, tomb(state) builds a tombstone, revoked says the
//     minting key's epoch moved on since the mint, and spent says the uses
//     ran out and any grace after the last one is over.
const luaParse = `
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
local state = string.byte(v, 2)
if state ~= 0 then return {state + 1, v} end
local flags = string.byte(v, 3)
local function has(f) return math.floor(flags / f) % 2 == 1 end
local function u32(p) local a, b, c, d = string.byte(v, p, p + 3); return ((a * 256 + b) * 256 + c) * 256 + d end
local function p32(n) return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256) end
local epoch = u32(4)
local pos = 8
local uses, exhausted = 0, 0
if has(1) then uses = u32(8); exhausted = u32(12); pos = 16 end
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
local kpos = pos
local klen = uvarint()
local keyid = string.sub(v, pos, pos + klen - 1)
local function tomb(st) return string.char(3, st, 0) .. string.sub(v, kpos, pos + klen - 1) end
local now = tonumber(ARGV[1])
local expires = created + ttl
if now >= expires then return {0} end
local revoked = epoch < tonumber(redis.call('GET', ARGV[2] .. keyid) or '0')
local spent = maxu > 0 and uses >= maxu and not (exhausted > 0 and now <= created + exhausted - 1 + grace)
`

// put writes a new record with its key's current epoch in one step:
// KEYS[1] the record, KEYS[2] its key's epoch key in the same slot;
// ARGV[1] the envelope with room for the epoch at offset 3, ARGV[2] the
// TTL in ms. {0} when the record exists, else {1}.
var put = redis.NewScript(`
local e = tonumber(redis.call('GET', KEYS[2]) or '0')
local v = ARGV[1]
v = string.sub(v, 1, 3) .. string.char(math.floor(e / 16777216) % 256, math.floor(e / 65536) % 256, math.floor(e / 256) % 256, e % 256) .. string.sub(v, 8)
if not redis.call('SET', KEYS[1], v, 'PX', ARGV[2], 'NX') then return {0} end
return {1}
`)

// consume is one use of a token: {0} none, {2} used, {3} revoked, or
// {1, value, uses} after counting the use and sliding the idle expiry.
var consume = redis.NewScript(luaParse + `
if revoked then
  redis.call('SET', KEYS[1], tomb(2), 'KEEPTTL')
  return {3}
end
if spent then
  redis.call('SET', KEYS[1], tomb(1), 'KEEPTTL')
  return {2}
end
if maxu > 0 and uses < maxu then
  uses = uses + 1
  if uses < maxu or grace > 0 then
    redis.call('SETRANGE', KEYS[1], 7, p32(uses))
    if uses == maxu then redis.call('SETRANGE', KEYS[1], 11, p32(now - created + 1)) end
  else
    redis.call('SET', KEYS[1], tomb(1), 'KEEPTTL')
  end
end
if idle > 0 then redis.call('PEXPIRE', KEYS[1], math.min(idle, expires - now)) end
return {1, v, uses}
`)

// peek reads a record without using it: {0}, {2, tombstone}, {3, tombstone}
// (also for a record whose key was revoked since), or {1, value}.
var peek = redis.NewScript(luaParse + `
if revoked then return {3, tomb(2)} end
return {1, v}
`)

// take ends a live token and returns it, for a refresh: {0}, {2}, {3} as
// consume, or {1, value}.
var take = redis.NewScript(luaParse + `
if revoked then return {3} end
if spent then return {2} end
redis.call('SET', KEYS[1], tomb(2), 'KEEPTTL')
return {1, v}
`)

// revoke turns a live token into a revoked tombstone: {0} none, {2, v}
// used already, {3, v} revoked already, {1} revoked now.
var revoke = redis.NewScript(luaParse + `
redis.call('SET', KEYS[1], tomb(2), 'KEEPTTL')
return {1}
`)

// scripts are loaded together when a pipeline finds one missing.
var scripts = []*redis.Script{put, consume, peek, take, revoke}
