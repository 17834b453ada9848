package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
)

// The behaviour of the limiter is tested with the in-process one, from one
// table, in server/ratelimit. Here: where its keys live and how it fails.

// A limit's key sits under the store's prefix (so an ACL of <prefix>*
// covers it), holds a number only, and expires when its bucket is full.
func TestLimiterLayout(t *testing.T) {
	_, c, prefix := newRedis(t)
	l, err := redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if ok, _, err := l.AllowN(ctx, "fail:192.0.2.1", 10, time.Minute, 3); err != nil || !ok {
		t.Fatalf("AllowN = %v, %v", ok, err)
	}
	keys, err := c.Keys(ctx, "*fail:192.0.2.1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := prefix + "rl:fail:192.0.2.1"; len(keys) != 1 || keys[0] != want {
		t.Fatalf("keys = %q, want [%q]", keys, want)
	}
	ttl, err := c.PTTL(ctx, keys[0]).Result()
	if err != nil || ttl <= 17*time.Second || ttl > 18*time.Second {
		t.Fatalf("PTTL = %v, %v; want 18s, the time until the bucket is full", ttl, err)
	}
	if v, err := c.Get(ctx, keys[0]).Int64(); err != nil || v < time.Now().UnixMicro() {
		t.Fatalf("value = %d, %v; want a time in µs", v, err)
	}
}

// An outage is ErrUnavailable, as for the records.
func TestLimiterUnavailable(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	l, err := redisstore.NewLimiter(c, redisstore.LimiterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.AllowN(context.Background(), "k", 1, time.Second, 1); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("AllowN = %v, want ErrUnavailable", err)
	}
	// A limit that is off never asks Redis.
	if ok, _, err := l.AllowN(context.Background(), "k", 0, time.Second, 1); err != nil || !ok {
		t.Fatalf("AllowN with no limit = %v, %v", ok, err)
	}
	if _, err := redisstore.NewLimiter(nil, redisstore.LimiterOptions{}); err == nil {
		t.Fatal("NewLimiter accepted a nil client")
	}
}
