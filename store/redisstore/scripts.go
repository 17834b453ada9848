package redisstore

import (
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store"
)

// The record scripts share this prelude, which reads a record envelope
// (see codec.go) in Lua. KEYS[1] is the record; ARGV[1] is now in Unix ms;
// ARGV[2] is the name of the record's epoch keys up to the key id
// ("<prefix>{g}e:"), in the record's own hash slot. After it:
//
//   - no record, or an expired one: the script has returned {0};
//   - a tombstone: it has returned {2, v} (used), {3, v} (revoked) or
//     {4, v} (taken, which callers report as revoked);
//   - otherwise v, uses, exhausted, created, ttl, maxu, grace, idle and
//     expires are set, string.sub(v, kpos, pos + klen - 1) is the key id
//     with its length (what a tombstone keeps after its 3-byte head),
//     revoked says the minting key's epoch moved on since the mint, and
//     spent says the uses ran out and any grace after the last one is over.
//
// It makes no closure but the varint reader: the scripts run on every use.
// It is luaRead then luaLive, so a script can act on a tombstone between
// the two (revoke and consume do).
const luaParse = luaRead + luaLive

// luaRead reads the record: v, state, flags and the epoch bytes e1..e4,
// and hb, the fHistory flag (32 or 0) that tombstones keep too.
const luaRead = `
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
local _, state, flags, e1, e2, e3, e4 = string.byte(v, 1, 7)
local hb = flags % 64 - flags % 32
`

// luaHistory adds the entry "<ARGV[1]>|<o>|<ARGV[3]>" (now; the outcome
// o: empty when done, u refused as used, r refused as revoked; and the
// caller's note) to the history KEYS[2] of a record that keeps one, keeping the
// newest store.HistorySize. RPUSHX: only put creates a history, with the
// record's TTL, so an entry can never leave a list behind that outlives
// its record. pcall: a Redis out of memory drops the entry, not the call.
var luaHistory = `if hb > 0 then
  local n = redis.pcall('RPUSHX', KEYS[2], ARGV[1] .. '|' .. o .. '|' .. ARGV[3])
  if type(n) == 'number' and n > ` + strconv.Itoa(store.HistorySize) + ` then redis.pcall('LTRIM', KEYS[2], -` + strconv.Itoa(store.HistorySize) + `, -1) end
end
`

// luaLive returns for a tombstone and parses a live record.
const luaLive = `if state ~= 0 then return {state + 1, v} end
local epoch = ((e1 * 256 + e2) * 256 + e3) * 256 + e4
local pos, uses, exhausted = 8, 0, 0
if flags % 2 == 1 then
  local a, b, c, d, e, f, g, h = string.byte(v, 8, 15)
  uses = ((a * 256 + b) * 256 + c) * 256 + d
  exhausted = ((e * 256 + f) * 256 + g) * 256 + h
  pos = 16
end
local function uv()
  local x, mul = 0, 1
  while true do
    local c = string.byte(v, pos)
    pos = pos + 1
    if c < 128 then return x + c * mul end
    x = x + (c - 128) * mul
    mul = mul * 128
  end
end
local created = uv()
local ttl = uv()
local maxu, grace, idle = 0, 0, 0
if flags % 2 == 1 then maxu = uv() end
if flags % 4 >= 2 then grace = uv() end
if flags % 8 >= 4 then idle = uv() end
if flags % 32 >= 16 then uv() end
local kpos = pos
local klen = uv()
local now = tonumber(ARGV[1])
local expires = created + ttl
if now >= expires then return {0} end
local current = redis.call('GET', ARGV[2] .. string.sub(v, pos, pos + klen - 1))
local revoked = current ~= false and epoch < tonumber(current)
local spent = maxu > 0 and uses >= maxu and not (exhausted > 0 and now <= created + exhausted - 1 + grace)
`

// put writes a new record with its key's current epoch in one step:
// KEYS[1] the record, KEYS[2] its key's epoch key, KEYS[3] its history,
// all in the same slot; ARGV[1] the envelope with room for the epoch at
// offset 3, ARGV[2] the TTL in ms, ARGV[3] the history's first entry (an
// empty string for a record without a history), ARGV[4] if given the
// epoch of the token a refresh ended, which the record keeps if it is
// older. The history gets the record's TTL in the same step, so both
// expire together. {0} when the record exists, else {1}.
var put = redis.NewScript(`
local e = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[4] then e = math.min(e, tonumber(ARGV[4])) end
local v = ARGV[1]
v = string.sub(v, 1, 3) .. string.char(math.floor(e / 16777216) % 256, math.floor(e / 65536) % 256, math.floor(e / 256) % 256, e % 256) .. string.sub(v, 8)
if not redis.call('SET', KEYS[1], v, 'PX', ARGV[2], 'NX') then return {0} end
if ARGV[3] ~= '' then
  redis.call('DEL', KEYS[3])
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return {1}
`)

// consume is one use of a token: {0} none, {2, tombstone} used, {3,
// tombstone} revoked ({4, tombstone}: taken), or {1, value, uses} after
// counting the use and sliding the idle expiry. KEYS[2] is the record's
// history and ARGV[3] the caller's note: the use, or its refusal, is the
// history's newest entry, and an idle expiry slides the history's with
// the record's.
//
// A Redis out of memory (maxmemory, noeviction) refuses the first write a
// script makes (SET, SETRANGE; PEXPIRE is allowed). A token without a use
// limit writes nothing, so it still verifies; a use that must be counted
// fails with the OOM error, nothing written. The tombstones written on a
// refusal only save memory (the epoch, or the counters, refuse the token
// again next time), so they are written with pcall: a full Redis still
// answers revoked or used.
var consume = redis.NewScript(luaRead + `
if state ~= 0 then
  local o = 'r'
  if state == 1 then o = 'u' end
` + luaHistory + `  return {state + 1, v}
end
` + luaLive + `
local o, out = '', nil
if revoked then
  local t = string.char(3, 2, hb) .. string.sub(v, kpos, pos + klen - 1)
  redis.pcall('SET', KEYS[1], t, 'KEEPTTL')
  o, out = 'r', {3, t}
elseif spent then
  local t = string.char(3, 1, hb) .. string.sub(v, kpos, pos + klen - 1)
  redis.pcall('SET', KEYS[1], t, 'KEEPTTL')
  o, out = 'u', {2, t}
else
  if maxu > 0 and uses < maxu then
    uses = uses + 1
    if uses < maxu or grace > 0 then
      redis.call('SETRANGE', KEYS[1], 7, string.char(math.floor(uses / 16777216) % 256, math.floor(uses / 65536) % 256, math.floor(uses / 256) % 256, uses % 256))
      if uses == maxu then redis.call('SETRANGE', KEYS[1], 11, string.char(math.floor((now - created + 1) / 16777216) % 256, math.floor((now - created + 1) / 65536) % 256, math.floor((now - created + 1) / 256) % 256, (now - created + 1) % 256)) end
    else
      redis.call('SET', KEYS[1], string.char(3, 1, hb) .. string.sub(v, kpos, pos + klen - 1), 'KEEPTTL')
    end
  end
  if idle > 0 then
    redis.call('PEXPIRE', KEYS[1], math.min(idle, expires - now))
    if hb > 0 then redis.pcall('PEXPIRE', KEYS[2], math.min(idle, expires - now)) end
  end
  out = {1, v, uses}
end
` + luaHistory + `return out
`)

// peek reads a record without using it: {0}, {2, tombstone}, {3, tombstone}
// (also for a record whose key was revoked since), or {1, value}.
var peek = redis.NewScript(luaParse + `
if revoked then return {3, string.char(3, 2, hb) .. string.sub(v, kpos, pos + klen - 1)} end
return {1, v}
`)

// take ends a live token and returns it, for a refresh: {0}, {2}, {3}, {4}
// as consume, or {1, value}. A token whose uses ran out is refused ({2})
// even within its reuse grace, and left as it is: the grace is for
// verifying again, never for minting a successor. The token is left as a
// taken tombstone (state 3), which restore can undo and revoke cannot be
// lost to.
var take = redis.NewScript(luaParse + `
if revoked then return {3, string.char(3, 2, hb) .. string.sub(v, kpos, pos + klen - 1)} end
if maxu > 0 and uses >= maxu then return {2, string.char(3, 1, hb) .. string.sub(v, kpos, pos + klen - 1)} end
redis.call('SET', KEYS[1], string.char(3, 3, hb) .. string.sub(v, kpos, pos + klen - 1), 'KEEPTTL')
return {1, v}
`)

// revoke turns a live token, or a taken tombstone, into a revoked
// tombstone: {0} none, {2, v} used already, {3, v} revoked already, {1}
// revoked now. SETRANGE rewrites only the state byte and keeps the TTL.
// KEYS[2] is the history and ARGV[3] the caller's note: every revocation
// of a token that is there, ended already or not, is its newest entry.
var revoke = redis.NewScript(luaRead + `
local o = ''
if state == 3 then
  redis.call('SETRANGE', KEYS[1], 1, string.char(2))
` + luaHistory + `  return {1}
end
if state ~= 0 then
` + luaHistory + `  return {state + 1, v}
end
` + luaLive + `
redis.call('SET', KEYS[1], string.char(3, 2, hb) .. string.sub(v, kpos, pos + klen - 1), 'KEEPTTL')
` + luaHistory + `return {1}
`)

// restore puts back the record a take ended, if the taken tombstone is
// still there: KEYS[1] the record, ARGV[1] its envelope. {1} restored with
// the tombstone's TTL, {0} none, {2} used, {3} revoked (since the take:
// nothing changes), {4} a live record (restored already).
var restore = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
local state = string.byte(v, 2)
if state == 3 then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
  return {1}
end
if state == 0 then return {4} end
return {state + 1}
`)

// scripts are loaded together when a pipeline finds one missing.
var scripts = []*redis.Script{put, consume, peek, take, revoke, restore}
