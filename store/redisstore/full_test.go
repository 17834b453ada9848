package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// A Redis at maxmemory under noeviction refuses writes: the store says
// ErrFull, which is ErrUnavailable too. Tokens that need no write still
// verify: no use limit (an idle expiry is slid by PEXPIRE, which Redis
// allows when full), tombstones, revoked keys; a use that must be counted
// is refused, and not counted.
func TestRedisFull(t *testing.T) {
	if !errors.Is(store.ErrFull, store.ErrUnavailable) || errors.Is(store.ErrUnavailable, store.ErrFull) {
		t.Fatal("ErrFull must be ErrUnavailable, not the other way round")
	}
	srv := storetest.StartServer(t, storetest.ServerOptions{Args: []string{"--maxmemory-policy", "noeviction"}})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	s, err := redisstore.New(c, redisstore.Options{Prefix: "full:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mint := func(edit func(*store.Record)) store.ID {
		t.Helper()
		rec := storetest.NewRecord(`{"a":1}`, time.Hour)
		rec.History = true // as the service mints: a full Redis drops entries, not uses
		if edit != nil {
			edit(&rec)
		}
		id := storetest.NewID(t)
		if err := s.Put(ctx, id, rec, ""); err != nil {
			t.Fatal(err)
		}
		return id
	}
	plain := mint(nil)
	idle := mint(func(r *store.Record) { r.IdleTTL = time.Minute })
	limited := mint(func(r *store.Record) { r.MaxUses = 5 })
	single := mint(func(r *store.Record) { r.MaxUses = 1 })
	used := mint(func(r *store.Record) { r.MaxUses = 1 })
	if _, err := s.Consume(ctx, used, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	spent := mint(func(r *store.Record) { r.MaxUses, r.ReuseGrace = 1, time.Millisecond })
	if _, err := s.Consume(ctx, spent, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	keyRevoked := mint(func(r *store.Record) { r.KeyID = "gone" })
	if _, err := s.RevokeKey(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	marker := storetest.NewID(t)
	if err := s.PutMarker(ctx, marker, []byte("m"), time.Hour); err != nil {
		t.Fatal(err)
	}

	// Fill it: a limit just above what it holds, then records of 8 KiB
	// until a Put is refused.
	before := usedMemory(t, c)
	if err := c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(before+512<<10, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	bundle := `{"pad":"` + strings.Repeat("x", 8<<10) + `"}`
	var n int
	for ; ; n++ {
		err = s.Put(ctx, storetest.NewID(t), storetest.NewRecord(bundle, time.Hour), "")
		if err != nil {
			break
		}
		if n > 10000 {
			t.Fatal("Redis took 80 MB past a limit of 512 KiB more than it held")
		}
	}
	t.Logf("used_memory %d before filling, maxmemory %d, %d records of 8 KiB stored, then: %v", before, before+512<<10, n, err)
	isFull := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrFull) || !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: got %v, want ErrFull and ErrUnavailable", what, err)
		}
	}
	isFull("Put", err)

	// Reads, and uses that write nothing.
	for name, id := range map[string]store.ID{"plain": plain, "idle": idle, "limited": limited} {
		if got, err := s.Get(ctx, id); err != nil || got.State != store.Live {
			t.Errorf("Get %s: %+v, %v", name, got, err)
		}
	}
	for name, id := range map[string]store.ID{"plain": plain, "idle": idle} {
		if got, err := s.Consume(ctx, id, time.Now(), ""); err != nil || string(got.Bundle) != `{"a":1}` {
			t.Errorf("Consume %s while full: %+v, %v", name, got, err)
		}
	}
	for i, r := range s.ConsumeMany(ctx, []store.ID{plain, idle}, time.Now(), "") {
		if r.Err != nil {
			t.Errorf("ConsumeMany %d while full: %v", i, r.Err)
		}
	}
	for i, r := range s.GetMany(ctx, []store.ID{plain, limited}) {
		if r.Err != nil || r.Record.State != store.Live {
			t.Errorf("GetMany %d while full: %+v", i, r)
		}
	}
	if got, err := s.GetMarker(ctx, marker); err != nil || string(got) != "m" {
		t.Errorf("GetMarker while full: %q, %v", got, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping while full: %v", err)
	}
	// Refusals that would write a tombstone still say why.
	_, err = s.Consume(ctx, keyRevoked, time.Now(), "")
	wantIs(t, "Consume of a key-revoked token while full", err, store.ErrRevoked)
	_, err = s.Consume(ctx, used, time.Now(), "")
	wantIs(t, "Consume of a used token while full", err, store.ErrUsed)
	_, err = s.Consume(ctx, spent, time.Now().Add(time.Second), "")
	wantIs(t, "Consume of a token past its grace while full", err, store.ErrUsed)

	// Writes are refused.
	_, limitedErr := s.Consume(ctx, limited, time.Now(), "")
	isFull("Consume of a token with a use limit", limitedErr)
	_, err = s.Consume(ctx, single, time.Now(), "")
	isFull("Consume of a single-use token", err)
	isFull("ConsumeMany of a token with a use limit", s.ConsumeMany(ctx, []store.ID{limited}, time.Now(), "")[0].Err)
	_, err = s.Take(ctx, plain, time.Now())
	isFull("Take", err)
	isFull("Revoke", s.Revoke(ctx, plain, time.Now(), ""))
	_, err = s.RevokeKey(ctx, "partner-1")
	isFull("RevokeKey", err)
	isFull("PutMarker", s.PutMarker(ctx, storetest.NewID(t), []byte("m"), time.Hour))
	t.Logf("Consume of a token with a use limit while full: %v", limitedErr)

	// Room again: nothing refused was half done.
	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Consume(ctx, limited, time.Now(), ""); err != nil || got.Uses != 1 {
		t.Fatalf("first counted use after the refusals: %+v, %v; want uses 1", got, err)
	}
	if _, err := s.Consume(ctx, single, time.Now(), ""); err != nil {
		t.Fatalf("the single-use token after its refused use: %v", err)
	}
	if _, err := s.Take(ctx, plain, time.Now()); err != nil {
		t.Fatalf("Take after the refusals: %v", err)
	}
}

func usedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

func wantIs(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}
