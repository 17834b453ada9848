package redisstore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// LimiterOptions configure a Limiter.
type LimiterOptions struct {
	// Prefix starts every key the limiter writes, followed by LimitInfix.
	// Default DefaultPrefix: the store's, so one ACL key pattern covers both.
	Prefix string
	// Now, if set, is the clock (tests). Default: Redis's own TIME, read
	// inside the script, so instances whose clocks disagree still share one
	// limit.
	Now func() time.Time
}

// Limiter keeps rate limits in Redis: a generic cell rate algorithm
// (GCRA), one string key per limited thing holding its theoretical
// arrival time in µs, with a TTL that ends when its bucket is full again.
// Every call is one Lua script on that one key, so concurrent calls from
// any number of instances never admit more than the limit, on a Cluster
// too. GCRA state is disposable: losing it only forgets recent events, so
// its writes never wait for replicas (Options.Replicas).
type Limiter struct {
	c      redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewLimiter returns rate limits kept in c. It does not contact Redis.
func NewLimiter(c redis.UniversalClient, opts LimiterOptions) (*Limiter, error) {
	if c == nil {
		return nil, errors.New("store: nil Redis client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	return &Limiter{c: c, prefix: opts.Prefix + LimitInfix, now: opts.Now}, nil
}

// AllowN asks for n events of key under a limit of events per per, in
// bursts of up to events: each event costs per/events of a bucket that
// holds events and refills at that pace. Refused requests cost nothing;
// retryAfter is then how long until they would be allowed (n above events
// never is, and gets the wait as if the bucket could hold it).
//
// A negative n is a refund: it gives back -n events' worth, never beyond a
// full bucket, and is always allowed; a key back at a full bucket is
// deleted. A limit with events or per not above 0 allows everything without
// asking Redis. Errors wrap store.ErrUnavailable when Redis does not answer.
func (l *Limiter) AllowN(ctx context.Context, key string, events int, per time.Duration, n int) (allowed bool, retryAfter time.Duration, err error) {
	if events <= 0 || per <= 0 {
		return true, 0, nil
	}
	now := "" // the script reads TIME
	if l.now != nil {
		now = strconv.FormatInt(l.now().UnixMicro(), 10)
	}
	v, err := gcra.Run(ctx, l.c, []string{l.prefix + key}, per.Microseconds(), events, n, now).Int64Slice()
	if err != nil {
		return false, 0, wrap("rate limit", err)
	}
	return v[0] == 1, time.Duration(v[1]) * time.Microsecond, nil
}

// gcra is AllowN in Redis. KEYS[1] is the limit's key; ARGV[1] the period
// in µs, ARGV[2] the events it allows, ARGV[3] n (negative: a refund),
// ARGV[4] now in µs, or empty for Redis's TIME. It returns {1, 0} when
// allowed, {0, µs to wait} when not. Costs are rounded up to whole µs, so
// an event never costs less than the limit says, and a refund of n gives
// back exactly what n took. Numbers stay below 2^53, exact in Lua.
var gcra = redis.NewScript(`
local per, events, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local cost = math.ceil(math.abs(n) * per / events)
if n < 0 then cost = -cost end
local next = tat + cost
if n > 0 and next - per > now then return {0, next - per - now} end
if next <= now then
  redis.call('DEL', KEYS[1])
elseif n ~= 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000))
end
return {1, 0}
`)
