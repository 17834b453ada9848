// Package storetest is the contract every token store must meet, as a test
// suite, plus a helper that starts a real Redis for tests.
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokensvc/tokensvc/store"
)

// Store is the behaviour under test.
type Store interface {
	Put(ctx context.Context, id store.ID, rec store.Record) error
	Get(ctx context.Context, id store.ID) (store.Record, error)
	Delete(ctx context.Context, id store.ID) error
	Ping(ctx context.Context) error
}

// Run runs the contract suite. open returns a fresh, empty store for each
// subtest; subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"RoundTripKeepsBytes", testRoundTrip},
		{"GetMissing", testGetMissing},
		{"PutTaken", testPutTaken},
		{"Delete", testDelete},
		{"Expires", testExpires},
		{"RejectsNonPositiveTTL", testRejectsTTL},
		{"Ping", testPing},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// NewID returns a random ID.
func NewID(tb testing.TB) store.ID {
	tb.Helper()
	var id store.ID
	if _, err := rand.Read(id[:]); err != nil {
		tb.Fatal(err)
	}
	return id
}

// NewRecord returns a record with bundle, minted now, living ttl.
func NewRecord(bundle string, ttl time.Duration) store.Record {
	now := time.Now().Truncate(time.Millisecond)
	return store.Record{Bundle: []byte(bundle), KeyID: "partner-1", CreatedAt: now, ExpiresAt: now.Add(ttl)}
}

func testRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	// Exactness matters: big integers, exponents, escapes, unicode and
	// spacing must come back as they went in.
	bundle := `{"auth":"k","n":12345678901234567890,"f":1.50e3,"nested":{"a":[1,"two",null,true]},"u":"\u00e9t\u00e9 – ok","s":"a\"b"}`
	want := NewRecord(bundle, time.Hour)
	id := NewID(t)
	if err := s.Put(ctx, id, want); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(got.Bundle) != bundle {
		t.Errorf("bundle changed:\nwant %s\ngot  %s", bundle, got.Bundle)
	}
	if diff := cmp.Diff(want.KeyID, got.KeyID); diff != "" {
		t.Errorf("KeyID (-want +got):\n%s", diff)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("times: want %v..%v, got %v..%v", want.CreatedAt, want.ExpiresAt, got.CreatedAt, got.ExpiresAt)
	}
}

func testGetMissing(t *testing.T, s Store) {
	if _, err := s.Get(context.Background(), NewID(t)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a missing id: got %v, want ErrNotFound", err)
	}
}

func testPutTaken(t *testing.T, s Store) {
	ctx := context.Background()
	id := NewID(t)
	if err := s.Put(ctx, id, NewRecord(`{"a":1}`, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, id, NewRecord(`{"a":2}`, time.Hour)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Put: got %v, want ErrExists", err)
	}
	got, err := s.Get(ctx, id)
	if err != nil || string(got.Bundle) != `{"a":1}` {
		t.Fatalf("the first record must survive: got %s, %v", got.Bundle, err)
	}
}

func testDelete(t *testing.T, s Store) {
	ctx := context.Background()
	id, other := NewID(t), NewID(t)
	for _, i := range []store.ID{id, other} {
		if err := s.Put(ctx, i, NewRecord(`{}`, time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: got %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Delete: got %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, other); err != nil {
		t.Fatalf("Delete removed another record: %v", err)
	}
}

func testExpires(t *testing.T, s Store) {
	ctx := context.Background()
	id := NewID(t)
	if err := s.Put(ctx, id, NewRecord(`{}`, 300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); err != nil {
		t.Fatalf("Get right after Put: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Get(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the record outlived its TTL by seconds")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testRejectsTTL(t *testing.T, s Store) {
	rec := NewRecord(`{}`, time.Hour)
	rec.ExpiresAt = rec.CreatedAt
	if err := s.Put(context.Background(), NewID(t), rec); err == nil {
		t.Fatal("Put of a record that expires as it is created succeeded")
	}
}

func testPing(t *testing.T, s Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testConcurrent(t *testing.T, s Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := NewID(t)
			if err := s.Put(ctx, id, NewRecord(`{"x":1}`, time.Minute)); err != nil {
				errs <- err
				return
			}
			if _, err := s.Get(ctx, id); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
