package ratelimit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/server/ratelimit"
	"github.com/tokensvc/tokensvc/store/storetest"
)

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

// The in-process limiter, on a fake clock: a burst of N, then one per
// interval, exactly.
func TestMemoryGCRA(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	m := ratelimit.NewMemory(clk.Now)
	l := ratelimit.Limit{N: 3, Per: 3 * time.Second}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if d, _ := m.AllowN(ctx, "k", l, 1); !d.Allowed {
			t.Fatalf("burst event %d refused", i)
		}
	}
	d, _ := m.AllowN(ctx, "k", l, 1)
	if d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("fourth event: %+v, want refused with RetryAfter 1s", d)
	}
	if d, _ := m.AllowN(ctx, "other", l, 1); !d.Allowed {
		t.Fatal("keys are not independent")
	}
	clk.Add(time.Second)
	if d, _ := m.AllowN(ctx, "k", l, 1); !d.Allowed {
		t.Fatal("an event after the interval was refused")
	}
	if d, _ := m.AllowN(ctx, "k", l, 2); d.Allowed {
		t.Fatal("two events with none left were allowed")
	}
	if d, _ := m.AllowN(ctx, "k", ratelimit.Limit{}, 1000); !d.Allowed {
		t.Fatal("the zero limit refused")
	}
}

// Limits in Redis are shared by every limiter on the same Redis, as by
// every instance of the service.
func TestRedisSharedAcrossInstances(t *testing.T) {
	storetest.NeedDocker(t)
	url, stop, err := storetest.StartRedis(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	opts, _ := redis.ParseURL(url)
	c1, c2 := redis.NewClient(opts), redis.NewClient(opts)
	defer c1.Close()
	defer c2.Close()
	a, b := ratelimit.NewRedis(c1, "t:"), ratelimit.NewRedis(c2, "t:")
	l := ratelimit.Limit{N: 10, Per: time.Minute}
	ctx := context.Background()
	allowed := 0
	for i := 0; i < 20; i++ {
		var lim limiter = a
		if i%2 == 1 {
			lim = b
		}
		d, err := lim.AllowN(ctx, "ip:192.0.2.1", l, 1)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		} else if d.RetryAfter <= 0 || d.RetryAfter > 6*time.Second {
			t.Fatalf("RetryAfter = %v", d.RetryAfter)
		}
	}
	if allowed != 10 {
		t.Fatalf("%d of 20 allowed across two instances, want 10", allowed)
	}
	if d, _ := a.AllowN(ctx, "ip:192.0.2.2", l, 1); !d.Allowed {
		t.Fatal("keys are not independent")
	}
}
