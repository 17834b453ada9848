package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/storetest"
)

func TestMemoryContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) server.Store {
		m := store.NewMemory(nil, 0)
		t.Cleanup(func() { m.Close() })
		return m
	})
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// Expiry is exact to the instant, without sleeping: alive one nanosecond
// before ExpiresAt, gone at it, and a gone record's ID can be reused.
func TestMemoryExpiryIsExact(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	m := store.NewMemory(clk.Now, time.Hour)
	defer m.Close()
	ctx := context.Background()
	id := storetest.NewID(t)
	rec := store.Record{Bundle: []byte(`{}`), CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Minute)}
	if err := m.Put(ctx, id, rec, ""); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute - time.Nanosecond)
	if _, err := m.Consume(ctx, id, clk.Now(), ""); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	clk.Add(time.Nanosecond)
	if _, err := m.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("at expiry: got %v, want ErrNotFound", err)
	}
	rec.CreatedAt, rec.ExpiresAt = clk.Now(), clk.Now().Add(time.Minute)
	if err := m.Put(ctx, id, rec, ""); err != nil {
		t.Fatalf("reusing an expired ID: %v", err)
	}
}

// The stored bundle is a copy: changing the caller's slice afterwards does
// not change what Get returns.
func TestMemoryCopiesBundle(t *testing.T) {
	m := store.NewMemory(nil, 0)
	defer m.Close()
	ctx := context.Background()
	id := storetest.NewID(t)
	rec := storetest.NewRecord(`{"a":1}`, time.Hour)
	if err := m.Put(ctx, id, rec, ""); err != nil {
		t.Fatal(err)
	}
	rec.Bundle[5] = '2'
	got, _ := m.Get(ctx, id)
	if string(got.Bundle) != `{"a":1}` {
		t.Fatalf("bundle = %s", got.Bundle)
	}
}

// A marker expires to the instant, without sleeping, and its name is free
// again at that instant.
func TestMemoryMarkerExpiryIsExact(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	m := store.NewMemory(clk.Now, time.Hour)
	defer m.Close()
	ctx := context.Background()
	name := storetest.NewID(t)
	if err := m.PutMarker(ctx, name, []byte("a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute - time.Nanosecond)
	if _, err := m.GetMarker(ctx, name); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	if err := m.PutMarker(ctx, name, []byte("b"), time.Minute); !errors.Is(err, store.ErrExists) {
		t.Fatalf("PutMarker before expiry: got %v, want ErrExists", err)
	}
	clk.Add(time.Nanosecond)
	if _, err := m.GetMarker(ctx, name); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("at expiry: got %v, want ErrNotFound", err)
	}
	if err := m.PutMarker(ctx, name, []byte("b"), time.Minute); err != nil {
		t.Fatalf("reusing an expired name: %v", err)
	}
}
