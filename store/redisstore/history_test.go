package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// A history is a list next to its record, in its hash slot, with the
// record's TTL from the same script, and it slides with the record's idle
// expiry; a record without one has no list.
func TestRedisHistoryLayout(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := context.Background()
	id := storetest.NewID(t)
	rec := storetest.NewRecord(`{"a":"b"}`, time.Hour)
	rec.History, rec.IdleTTL = true, 10*time.Minute
	if err := s.Put(ctx, id, rec, "g"); err != nil {
		t.Fatal(err)
	}
	group := fmt.Sprintf("{%02x}", id[0])
	record, hist := prefix+group+"t:"+string(id[:]), prefix+group+"h:"+string(id[:])
	if typ, err := c.Type(ctx, hist).Result(); err != nil || typ != "list" {
		t.Fatalf("type of %q = %q, %v; want list", hist, typ, err)
	}
	// The same script sets both expiries from one clock reading: compare
	// the moments they expire (PEXPIRETIME), not two PTTL readings taken
	// one after the other on a loaded machine.
	sameTTL := func(when string) {
		t.Helper()
		a, _ := c.PExpireTime(ctx, record).Result()
		b, _ := c.PExpireTime(ctx, hist).Result()
		if a <= 0 || a-b > time.Millisecond || b-a > time.Millisecond {
			t.Fatalf("%s: record expires at %v, history at %v (Unix time); want the same", when, a, b)
		}
	}
	sameTTL("after Put")
	// Push both TTLs down, then a use slides both back to the idle time.
	c.PExpire(ctx, record, time.Minute)
	c.PExpire(ctx, hist, time.Minute)
	if _, err := s.Consume(ctx, id, time.Now(), "uv"); err != nil {
		t.Fatal(err)
	}
	sameTTL("after a use")
	if ttl, _ := c.PTTL(ctx, hist).Result(); ttl < 9*time.Minute {
		t.Fatalf("history PTTL %v after a use, want the idle time again", ttl)
	}
	if n, _ := c.LLen(ctx, hist).Result(); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}

	plain := storetest.NewID(t)
	if err := s.Put(ctx, plain, storetest.NewRecord(`{}`, time.Hour), "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consume(ctx, plain, time.Now(), "uv"); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(ctx, prefix+fmt.Sprintf("{%02x}", plain[0])+"h:"+string(plain[:])).Result(); n != 0 {
		t.Fatal("a record minted without a history has one")
	}
	// Annotate never creates a list: no list without a record.
	missing := storetest.NewID(t)
	if err := s.Annotate(ctx, time.Now(), store.Note{ID: missing, Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if keys, _ := c.Keys(ctx, prefix+"*"+string(missing[:])).Result(); len(keys) != 0 {
		t.Fatalf("Annotate created %q", keys)
	}
}

// Put starts a history afresh: a list left behind by an earlier record of
// the same ID (deleted or evicted without its history), or a key of
// another type there, gives way to a list of the mint alone, with the
// record's TTL.
func TestRedisPutStartsHistoryAfresh(t *testing.T) {
	s, c, prefix := newRedis(t)
	ctx := context.Background()
	rec := storetest.NewRecord(`{"a":"b"}`, time.Hour)
	rec.History = true
	for _, left := range []string{"list", "string"} {
		id := storetest.NewID(t)
		group := fmt.Sprintf("{%02x}", id[0])
		record, hist := prefix+group+"t:"+string(id[:]), prefix+group+"h:"+string(id[:])
		if left == "list" {
			if err := s.Put(ctx, id, rec, "first"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Consume(ctx, id, time.Now(), "use"); err != nil {
				t.Fatal(err)
			}
			c.Del(ctx, record)
			c.PExpire(ctx, hist, time.Minute)
		} else {
			c.Set(ctx, hist, "x", time.Minute)
		}
		if err := s.Put(ctx, id, rec, "again"); err != nil {
			t.Fatalf("%s left: Put: %v", left, err)
		}
		h, err := s.History(ctx, id)
		if err != nil || len(h) != 1 || h[0].Note != "again" || !h[0].At.Equal(rec.CreatedAt) {
			t.Fatalf("%s left: history %+v, %v; want the mint alone", left, h, err)
		}
		if ttl, _ := c.PTTL(ctx, hist).Result(); ttl < 59*time.Minute {
			t.Fatalf("%s left: history PTTL %v, want the record's", left, ttl)
		}
	}
}
