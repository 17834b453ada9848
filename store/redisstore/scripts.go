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
// The scripts run on every use, so the prelude is written for Redis's Lua
// (5.1): no closure, and as few calls of string.byte as can be (a C call
// costs more there than the arithmetic around it). It is luaRead then
// luaLive, so a script can act on a tombstone between the two (revoke and
// consume do).
var luaParse = luaRead + luaLive

// luaRead reads the record: v, state, flags, the epoch bytes e1..e4 and
// x0..x9, the ten bytes after them (where a record without a use limit
// has its created_at and TTL), and hb, the fHistory flag (32 or 0) that
// tombstones keep too. byte is string.byte.
const luaRead = `
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
local byte = string.byte
local _, state, flags, e1, e2, e3, e4, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9 = byte(v, 1, 17)
local hb = flags % 64 - flags % 32
`

// luaUvarint reads the uvarint at pos into dst (a local already declared)
// and moves pos past it: the varint reader, inline, since a closure made
// on every call costs more than the code it saves.
func luaUvarint(dst string) string {
	return dst + ` = byte(v, pos)
pos = pos + 1
if ` + dst + ` > 127 then
  local c, mul = 0, 128
  ` + dst + ` = ` + dst + ` - 128
  repeat
    c = byte(v, pos)
    pos = pos + 1
    ` + dst + ` = ` + dst + ` + c % 128 * mul
    mul = mul * 128
  until c < 128
end
`
}

// luaHistory adds the entry "<ARGV[1]>|<o>|<ARGV[3]>" (now; the outcome
// o: empty when done, u refused as used, r refused as revoked; and the
// caller's note) to the history KEYS[2] of a record that keeps one, keeping the
// newest store.HistorySize. RPUSHX: only put creates a history, with the
// record's TTL, so an entry can never leave a list behind that outlives
// its record. pcall: a Redis out of memory drops the entry, not the call.
// LTRIM only when RPUSHX says the list grew past the cap.
var luaHistory = `if hb > 0 then
  local n = redis.pcall('RPUSHX', KEYS[2], ARGV[1] .. '|' .. o .. '|' .. ARGV[3])
  if type(n) == 'number' and n > ` + strconv.Itoa(store.HistorySize) + ` then redis.pcall('LTRIM', KEYS[2], -` + strconv.Itoa(store.HistorySize) + `, -1) end
end
`

// luaLive returns for a tombstone and parses a live record. created and
// ttl are read from x0..x9 when created takes six bytes, as every
// created_at from 1971 to 2109 does, and ttl at most four (under 3.1 days);
// any other record is read byte by byte, to the same values.
var luaLive = `if state ~= 0 then return {state + 1, v} end
local epoch = ((e1 * 256 + e2) * 256 + e3) * 256 + e4
local pos, uses, exhausted, maxu, grace, idle, created, ttl = 8, 0, 0, 0, 0, 0, 0, 0
if flags % 2 == 1 then
  uses = ((x0 * 256 + x1) * 256 + x2) * 256 + x3
  exhausted = ((x4 * 256 + x5) * 256 + x6) * 256 + x7
  pos = 16
  x0, x1, x2, x3, x4, x5, x6, x7, x8, x9 = byte(v, 16, 25)
end
if x5 and x5 < 128 and x0 > 127 and x1 > 127 and x2 > 127 and x3 > 127 and x4 > 127 then
  created = ((((x5 * 128 + x4 - 128) * 128 + x3 - 128) * 128 + x2 - 128) * 128 + x1 - 128) * 128 + x0 - 128
  if x6 < 128 then ttl, pos = x6, pos + 7
  elseif x7 < 128 then ttl, pos = x7 * 128 + x6 - 128, pos + 8
  elseif x8 < 128 then ttl, pos = (x8 * 128 + x7 - 128) * 128 + x6 - 128, pos + 9
  elseif x9 < 128 then ttl, pos = ((x9 * 128 + x8 - 128) * 128 + x7 - 128) * 128 + x6 - 128, pos + 10
  else
    pos = pos + 6
` + luaUvarint("ttl") + `  end
else
` + luaUvarint("created") + luaUvarint("ttl") + `end
if flags % 32 > 0 then
  if flags % 2 == 1 then
` + luaUvarint("maxu") + `  end
  if flags % 4 >= 2 then
` + luaUvarint("grace") + `  end
  if flags % 8 >= 4 then
` + luaUvarint("idle") + `  end
  if flags % 32 >= 16 then
    local session = 0
` + luaUvarint("session") + `  end
end
local kpos, klen = pos, 0
` + luaUvarint("klen") + `local now = tonumber(ARGV[1])
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
//
// The envelope is written as it came when its epoch bytes already hold
// the epoch (most often: no key revoked yet), and the history is started
// by one RPUSH: only a list left from an earlier record of the same ID (a
// record deleted or evicted without its history) is deleted and started
// again, to the same list DEL and RPUSH would leave.
var put = redis.NewScript(`
local e = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[4] then e = math.min(e, tonumber(ARGV[4])) end
local v = ARGV[1]
local e1, e2, e3, e4 = string.byte(v, 4, 7)
if ((e1 * 256 + e2) * 256 + e3) * 256 + e4 ~= e then
  v = string.sub(v, 1, 3) .. ` + luaBE32("e") + ` .. string.sub(v, 8)
end
if not redis.call('SET', KEYS[1], v, 'PX', ARGV[2], 'NX') then return {0} end
if ARGV[3] ~= '' then
  if redis.pcall('RPUSH', KEYS[3], ARGV[3]) ~= 1 then
    redis.call('DEL', KEYS[3])
    redis.call('RPUSH', KEYS[3], ARGV[3])
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return {1}
`)

// luaBE32 is the Lua expression of the four bytes of x, big-endian, as
// the envelope keeps its uint32 fields.
func luaBE32(x string) string {
	return `string.char(math.floor(` + x + ` / 16777216) % 256, math.floor(` + x + ` / 65536) % 256, math.floor(` + x + ` / 256) % 256, ` + x + ` % 256)`
}

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
      local w = ` + luaBE32("uses") + `
      if uses == maxu then
        local ran = now - created + 1
        w = w .. ` + luaBE32("ran") + `
      end
      redis.call('SETRANGE', KEYS[1], 7, w)
    else
      redis.call('SET', KEYS[1], string.char(3, 1, hb) .. string.sub(v, kpos, pos + klen - 1), 'KEEPTTL')
    end
  end
  if idle > 0 then
    local slide = math.min(idle, expires - now)
    redis.call('PEXPIRE', KEYS[1], slide)
    if hb > 0 then redis.pcall('PEXPIRE', KEYS[2], slide) end
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
