package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/server/ratelimit"
	"github.com/tokensvc/tokensvc/store/redisstore"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// limiter is what server.Limiter asks of both limiters.
type limiter interface {
	AllowN(ctx context.Context, key string, l ratelimit.Limit, n int) (ratelimit.Decision, error)
}

func TestParse(t *testing.T) {
	for in, want := range map[string]ratelimit.Limit{"": {}, "off": {}, "0": {}, "100/m": {N: 100, Per: time.Minute}, "5/s": {N: 5, Per: time.Second}, " 7/h ": {N: 7, Per: time.Hour}} {
		got, err := ratelimit.Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"100", "100/d", "x/m", "-1/s", "0/s"} {
		if _, err := ratelimit.Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// step is one call: after waiting, ask for n events (a refund if
// negative) and expect the decision.
type step struct {
	wait time.Duration
	n    int
	want ratelimit.Decision
}

var (
	yes = ratelimit.Decision{Allowed: true}
	// no is refused, retry after d.
	no = func(d time.Duration) ratelimit.Decision { return ratelimit.Decision{RetryAfter: d} }
)

// limiterCases run on every limiter. 3 per 3s: each event costs a second.
var limiterCases = []struct {
	name  string
	limit ratelimit.Limit
	steps []step
}{
	{"BurstThenOnePerInterval", ratelimit.Limit{N: 3, Per: 3 * time.Second}, []step{
		{0, 1, yes}, {0, 1, yes}, {0, 1, yes}, {0, 1, no(time.Second)},
		{time.Second, 1, yes}, {0, 1, no(time.Second)},
		{400 * time.Millisecond, 1, no(600 * time.Millisecond)},
	}},
	{"RetryAfterCountsTheEventsAskedFor", ratelimit.Limit{N: 3, Per: 3 * time.Second}, []step{
		{0, 3, yes}, {0, 2, no(2 * time.Second)}, {time.Second, 2, no(time.Second)}, {time.Second, 2, yes}, {0, 1, no(time.Second)},
	}},
	{"RefusedRequestsCostNothing", ratelimit.Limit{N: 3, Per: 3 * time.Second}, []step{
		{0, 2, yes}, {0, 2, no(time.Second)}, {0, 2, no(time.Second)}, {0, 1, yes}, {0, 1, no(time.Second)},
	}},
	{"MoreThanTheBurstIsNeverAllowed", ratelimit.Limit{N: 3, Per: 3 * time.Second}, []step{
		{0, 4, no(time.Second)}, {0, 3, yes}, {time.Hour, 5, no(2 * time.Second)},
	}},
	{"RefundGivesCapacityBack", ratelimit.Limit{N: 3, Per: 3 * time.Second}, []step{
		{0, 1, yes}, {0, 1, yes}, {0, 1, yes}, {0, 1, no(time.Second)},
		{0, -2, yes}, {0, 1, yes}, {0, 1, yes}, {0, 1, no(time.Second)},
	}},
	// /verify/batch: reserve the whole batch, give back the successes.
	{"ReserveThenGiveBack", ratelimit.Limit{N: 5, Per: 5 * time.Second}, []step{
		{0, 4, yes}, {0, 2, no(time.Second)}, {0, -3, yes}, {0, 4, yes}, {0, 1, no(time.Second)},
	}},
	{"RefundNeverBeyondAFullBucket", ratelimit.Limit{N: 3, Per: 3 * time.Second}, []step{
		{0, -5, yes}, {0, 3, yes}, {0, 1, no(time.Second)},
		{0, 1, no(time.Second)}, {2 * time.Second, -10, yes}, {0, 3, yes}, {0, 1, no(time.Second)},
	}},
	{"RefundAfterPartialRecovery", ratelimit.Limit{N: 3, Per: 3 * time.Second}, []step{
		{0, 3, yes}, {1500 * time.Millisecond, -1, yes}, {0, 2, yes}, {0, 1, no(500 * time.Millisecond)},
	}},
	{"ZeroAsksNothing", ratelimit.Limit{N: 3, Per: 3 * time.Second}, []step{
		{0, 0, yes}, {0, 3, yes}, {0, 0, yes}, {0, 1, no(time.Second)},
	}},
	{"ZeroLimitAllowsEverything", ratelimit.Limit{}, []step{
		{0, 1000, yes}, {0, -7, yes}, {0, 1, yes},
	}},
	{"PerMinute", ratelimit.Limit{N: 100, Per: time.Minute}, []step{
		{0, 100, yes}, {0, 1, no(600 * time.Millisecond)}, {600 * time.Millisecond, 1, yes}, {0, -1, yes}, {0, 1, yes},
	}},
}

// backend makes a limiter on a clock, and says whether its state under
// key is gone (nil: it cannot tell).
type backend struct {
	name string
	open func(t *testing.T, now func() time.Time) (l limiter, gone func(key string) bool)
}

func backends(t *testing.T) []backend {
	mem := backend{"Memory", func(t *testing.T, now func() time.Time) (limiter, func(string) bool) {
		return ratelimit.NewMemory(now), nil
	}}
	c := redisClient(t)
	return []backend{mem, {"Redis", func(t *testing.T, now func() time.Time) (limiter, func(string) bool) {
		prefix := fmt.Sprintf("rl%d:", prefixes.Add(1))
		l, err := redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: prefix, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return ratelimit.NewShared(l), func(key string) bool {
			n, err := c.Exists(context.Background(), prefix+redisstore.LimitInfix+key).Result()
			if err != nil {
				t.Fatal(err)
			}
			return n == 0
		}
	}}}
}

var prefixes atomic.Int64

// redisClient is a client of a real redis-server started for this test.
func redisClient(t *testing.T) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: storetest.StartServer(t, storetest.ServerOptions{}).Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

// One table of cases, on a fake clock, for the in-process limiter and the
// Redis one (which takes the clock as an argument of its script).
func TestLimiters(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range limiterCases {
				t.Run(tc.name, func(t *testing.T) {
					clk := &clock{now: time.Unix(1_800_000_000, 0)}
					l, gone := b.open(t, clk.Now)
					ctx := context.Background()
					for i, s := range tc.steps {
						clk.Add(s.wait)
						got, err := l.AllowN(ctx, "k", tc.limit, s.n)
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						if got != s.want {
							t.Fatalf("step %d: AllowN(%d) = %+v, want %+v", i, s.n, got, s.want)
						}
					}
					// Whatever happened, a full bucket is the initial state.
					clk.Add(time.Hour)
					if _, err := l.AllowN(ctx, "k", tc.limit, -1); err != nil {
						t.Fatal(err)
					}
					if gone != nil && !gone("k") {
						t.Fatal("the key outlived a full bucket")
					}
				})
			}
			t.Run("KeysAreIndependent", func(t *testing.T) {
				clk := &clock{now: time.Unix(1_800_000_000, 0)}
				l, _ := b.open(t, clk.Now)
				lim := ratelimit.Limit{N: 1, Per: time.Minute}
				for _, key := range []string{"fail:192.0.2.1", "fail:192.0.2.2", "gen:partner-1"} {
					if d, _ := l.AllowN(context.Background(), key, lim, 1); !d.Allowed {
						t.Fatalf("%s: %+v, want allowed", key, d)
					}
				}
				if d, _ := l.AllowN(context.Background(), "fail:192.0.2.1", lim, 1); d.Allowed {
					t.Fatal("the second event of a key was allowed")
				}
			})
			t.Run("RefundToFullDeletesTheKey", func(t *testing.T) {
				clk := &clock{now: time.Unix(1_800_000_000, 0)}
				l, gone := b.open(t, clk.Now)
				lim := ratelimit.Limit{N: 10, Per: time.Minute}
				ctx := context.Background()
				l.AllowN(ctx, "k", lim, 7)
				if gone != nil && gone("k") {
					t.Fatal("no state after an event")
				}
				l.AllowN(ctx, "k", lim, -7)
				if gone != nil && !gone("k") {
					t.Fatal("the key outlived a refund back to a full bucket")
				}
				if d, _ := l.AllowN(ctx, "k", lim, 10); !d.Allowed {
					t.Fatal("a full bucket refused its burst")
				}
			})
		})
	}
}

// Concurrent calls from two instances (clients) on Redis's own clock
// never admit more than the limit, and admit all of it.
func TestRedisLimiterConcurrent(t *testing.T) {
	addr := storetest.StartServer(t, storetest.ServerOptions{}).Addr()
	var shared [2]*ratelimit.Shared
	for i := range shared {
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 32})
		t.Cleanup(func() { c.Close() })
		l, err := redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: "conc:"})
		if err != nil {
			t.Fatal(err)
		}
		shared[i] = ratelimit.NewShared(l)
	}
	// 50 an hour: nothing refills while the test runs.
	lim := ratelimit.Limit{N: 50, Per: time.Hour}
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				d, err := shared[g%2].AllowN(context.Background(), "fail:198.51.100.7", lim, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					allowed.Add(1)
				} else if d.RetryAfter <= 0 || d.RetryAfter > lim.Per/time.Duration(lim.N) {
					t.Errorf("RetryAfter = %v", d.RetryAfter)
				} else {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != int64(lim.N) || refused.Load() != 64*4-int64(lim.N) {
		t.Fatalf("%d allowed and %d refused of %d, want exactly %d allowed", allowed.Load(), refused.Load(), 64*4, lim.N)
	}
}
