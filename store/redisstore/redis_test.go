package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
	"github.com/tokensvc/tokensvc/store/storetest"
)

var redisURL string

func TestMain(m *testing.M) { os.Exit(storetest.Main(m, &redisURL)) }

var prefixes atomic.Int64

// newRedis returns a store on the shared container with a prefix of its own,
// so parallel tests never see each other's keys.
func newRedis(t *testing.T) (*redisstore.Store, redis.UniversalClient, string) {
	t.Helper()
	opts, err := redis.ParseURL(storetest.NeedRedis(t, redisURL))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	prefix := fmt.Sprintf("test%d:", prefixes.Add(1))
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, prefix
}

func TestRedisContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) server.Store {
		s, _, _ := newRedis(t)
		return s
	})
}

// The whole contract holds with automatic pipelining, the production
// default, through which the single-record scripts go.
func TestRedisAutoPipelineContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) server.Store {
		opts, err := redis.ParseURL(storetest.NeedRedis(t, redisURL))
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { c.Close() })
		s, err := redisstore.New(c, redisstore.Options{Prefix: fmt.Sprintf("test%d:", prefixes.Add(1)), AutoPipeline: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// The key is the prefix plus the ID, the value never holds the ID, and the
// TTL is set by the write itself.
func TestRedisLayout(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := context.Background()
	id := storetest.NewID(t)
	if err := s.Put(ctx, id, storetest.NewRecord(`{"a":"b"}`, time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	group := fmt.Sprintf("{%02x}", id[0])
	if want := prefix + group + "t:" + string(id[:]); len(keys) != 1 || keys[0] != want {
		t.Fatalf("keys = %q, want [%q]", keys, want)
	}
	ttl, err := c.PTTL(ctx, keys[0]).Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("PTTL = %v, %v; want about one hour", ttl, err)
	}
	val, _ := c.Get(ctx, keys[0]).Result()
	if strings.Contains(val, string(id[:])) || strings.Contains(val, id.String()) {
		t.Fatal("the value repeats the record ID")
	}
}

// A marker is one string key next to the records of its group, holding
// the value as given, with the TTL set by the write itself.
func TestRedisMarkerLayout(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := context.Background()
	name := storetest.NewID(t)
	if err := s.PutMarker(ctx, name, []byte("v\x00w"), time.Minute); err != nil {
		t.Fatal(err)
	}
	want := prefix + fmt.Sprintf("{%02x}", name[0]) + "i:" + string(name[:])
	if keys, err := c.Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 1 || keys[0] != want {
		t.Fatalf("keys = %q, %v; want [%q]", keys, err, want)
	}
	if ttl, err := c.PTTL(ctx, want).Result(); err != nil || ttl <= 59*time.Second || ttl > time.Minute {
		t.Fatalf("PTTL = %v, %v; want about a minute", ttl, err)
	}
	if v, err := c.Get(ctx, want).Result(); err != nil || v != "v\x00w" {
		t.Fatalf("value = %q, %v", v, err)
	}
}

// Every operation on an unreachable Redis fails fast with ErrUnavailable.
func TestRedisUnavailable(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	s, err := redisstore.New(c, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := storetest.NewID(t)
	checks := map[string]error{
		"Put":    s.Put(ctx, id, storetest.NewRecord(`{}`, time.Minute), ""),
		"Revoke": s.Revoke(ctx, id, time.Now(), ""),
		"Ping":   s.Ping(ctx),
	}
	_, checks["Get"] = s.Get(ctx, id)
	_, checks["Consume"] = s.Consume(ctx, id, time.Now(), "")
	_, checks["Take"] = s.Take(ctx, id, time.Now())
	checks["Restore"] = s.Restore(ctx, id, storetest.NewRecord(`{}`, time.Minute))
	checks["PutMarker"] = s.PutMarker(ctx, id, nil, time.Minute)
	_, checks["GetMarker"] = s.GetMarker(ctx, id)
	_, checks["RevokeKey"] = s.RevokeKey(ctx, "k")
	checks["ConsumeMany"] = s.ConsumeMany(ctx, []store.ID{id}, time.Now(), "")[0].Err
	checks["GetMany"] = s.GetMany(ctx, []store.ID{id})[0].Err
	for op, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: got %v, want ErrUnavailable", op, err)
		}
	}
}

// A reply error that is not an outage (here: a key of the wrong type) is
// not reported as ErrUnavailable: it is a bug, not a reason to retry.
func TestRedisWrongTypeIsNotAnOutage(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := context.Background()
	id := storetest.NewID(t)
	if err := c.LPush(ctx, prefix+fmt.Sprintf("{%02x}t:", id[0])+string(id[:]), "x").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, id)
	if err == nil || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a list key: got %v, want a plain error", err)
	}
}

// afterScriptFlush is a store holding one record, {"a":1}, on a Redis
// whose script cache was flushed since (as a restart does).
func afterScriptFlush(t *testing.T) (*redisstore.Store, store.ID) {
	t.Helper()
	s, c, _ := newRedis(t)
	ctx := context.Background()
	id := storetest.NewID(t)
	if err := s.Put(ctx, id, storetest.NewRecord(`{"a":1}`, time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	return s, id
}

// A Redis that lost its script cache (restart, SCRIPT FLUSH) still serves
// the pipelined batch: the scripts are loaded again and the batch retried.
func TestRedisConsumeManyAfterScriptFlush(t *testing.T) {
	s, id := afterScriptFlush(t)
	ctx := context.Background()
	res := s.ConsumeMany(ctx, []store.ID{id, id}, time.Now(), "")
	for i, r := range res {
		if r.Err != nil || string(r.Record.Bundle) != `{"a":1}` {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
}

// GetMany shares ConsumeMany's pipeline, NOSCRIPT retry included.
func TestRedisGetManyAfterScriptFlush(t *testing.T) {
	s, id := afterScriptFlush(t)
	ctx := context.Background()
	res := s.GetMany(ctx, []store.ID{id, storetest.NewID(t)})
	if res[0].Err != nil || string(res[0].Record.Bundle) != `{"a":1}` || !errors.Is(res[1].Err, store.ErrNotFound) {
		t.Fatalf("GetMany after SCRIPT FLUSH: %+v", res)
	}
}
