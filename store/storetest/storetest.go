// Package storetest is the contract every token store must meet, as a test
// suite, plus helpers that start real Redis servers for tests. The contract
// is server.Store, declared (with each method's errors) where it is used;
// this package imports server for it, which only tests and test helpers
// do, so store itself stays free of server.
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/store"
)

// Run runs the contract suite: the contract is server.Store, the
// interface its one consumer declares, with each method's error contract
// in its documentation. open returns a fresh, empty store for each subtest;
// subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) server.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s server.Store)
	}{
		{"RoundTripKeepsBytes", testRoundTrip},
		{"PolicyRoundTrip", testPolicyRoundTrip},
		{"Missing", testMissing},
		{"PutTaken", testPutTaken},
		{"Expires", testExpires},
		{"RejectsBadRecords", testRejects},
		{"UsesRunOut", testUsesRunOut},
		{"ReuseGrace", testReuseGrace},
		{"IdleExpiry", testIdleExpiry},
		{"Revoke", testRevoke},
		{"TakeAndRestore", testTake},
		{"TakeRefusesUsedUp", testTakeUsedUp},
		{"TakenReadsAsRevoked", testTakenReadsAsRevoked},
		{"RevokeBetweenTakeAndRestore", testRevokeThenRestore},
		{"RevokeKeyBetweenTakeAndRestore", testRevokeKeyThenRestore},
		{"RestoreNeedsATake", testRestoreNeedsTake},
		{"SuccessorKeepsEpoch", testSuccessorKeepsEpoch},
		{"RevokeKey", testRevokeKey},
		{"ConsumeManyInOrder", testConsumeMany},
		{"GetManyInOrder", testGetMany},
		{"SingleUseUnderConcurrency", testSingleUseRace},
		{"Markers", testMarkers},
		{"MarkersExpire", testMarkersExpire},
		{"MarkersRejectBadInput", testMarkersReject},
		{"KeyIDs", testKeyIDs},
		{"Ping", testPing},
	}
	tests = append(tests, historyTests...)
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

func put(t *testing.T, s server.Store, rec store.Record) store.ID {
	t.Helper()
	id := NewID(t)
	if err := s.Put(context.Background(), id, rec, ""); err != nil {
		t.Fatalf("Put: %v", err)
	}
	return id
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func testRoundTrip(t *testing.T, s server.Store) {
	// Exactness matters: big integers, exponents, escapes, unicode and
	// spacing must come back as they went in.
	bundle := `{"auth":"k","n":12345678901234567890,"f":1.50e3,"nested":{"a":[1,"two",null,true]},"u":"\u00e9t\u00e9 – ok","s":"a\"b"}`
	want := NewRecord(bundle, time.Hour)
	id := put(t, s, want)
	for _, get := range []func() (store.Record, error){
		func() (store.Record, error) { return s.Get(context.Background(), id) },
		func() (store.Record, error) { return s.Consume(context.Background(), id, time.Now(), "") },
	} {
		got, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Bundle) != bundle {
			t.Errorf("bundle changed:\nwant %s\ngot  %s", bundle, got.Bundle)
		}
		if got.KeyID != want.KeyID || !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || got.State != store.Live {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
}

func testPolicyRoundTrip(t *testing.T, s server.Store) {
	want := NewRecord(`{"pub":1}`, time.Hour)
	want.Private = []byte(`{"auth":"secret"}`)
	want.SessionStart = want.CreatedAt.Add(-90 * time.Minute)
	want.MaxUses, want.ReuseGrace, want.IdleTTL = 5, 3*time.Second, 10*time.Minute
	id := put(t, s, want)
	got, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	opts := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
}

func testMissing(t *testing.T, s server.Store) {
	ctx, id := context.Background(), NewID(t)
	_, err := s.Get(ctx, id)
	wantErr(t, "Get", err, store.ErrNotFound)
	_, err = s.Consume(ctx, id, time.Now(), "")
	wantErr(t, "Consume", err, store.ErrNotFound)
	_, err = s.Take(ctx, id, time.Now())
	wantErr(t, "Take", err, store.ErrNotFound)
	wantErr(t, "Revoke", s.Revoke(ctx, id, time.Now(), ""), store.ErrNotFound)
}

func testPutTaken(t *testing.T, s server.Store) {
	ctx := context.Background()
	id := put(t, s, NewRecord(`{"a":1}`, time.Hour))
	wantErr(t, "second Put", s.Put(ctx, id, NewRecord(`{"a":2}`, time.Hour), ""), store.ErrExists)
	got, err := s.Get(ctx, id)
	if err != nil || string(got.Bundle) != `{"a":1}` {
		t.Fatalf("the first record must survive: got %s, %v", got.Bundle, err)
	}
}

// waitGone polls until the record is gone, for expiry kept by the store.
func waitGone(t *testing.T, s server.Store, id store.ID, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := s.Get(context.Background(), id)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the record outlived its expiry by seconds")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func testExpires(t *testing.T, s server.Store) {
	id := put(t, s, NewRecord(`{}`, 300*time.Millisecond))
	if _, err := s.Get(context.Background(), id); err != nil {
		t.Fatalf("Get right after Put: %v", err)
	}
	waitGone(t, s, id, 5*time.Second)
	// A clock past the expiry is refused even before the store drops it.
	id = put(t, s, NewRecord(`{}`, time.Hour))
	_, err := s.Consume(context.Background(), id, time.Now().Add(time.Hour), "")
	wantErr(t, "Consume after ExpiresAt", err, store.ErrNotFound)
}

func testRejects(t *testing.T, s server.Store) {
	bad := map[string]func(*store.Record){
		"expires at creation": func(r *store.Record) { r.ExpiresAt = r.CreatedAt },
		"too long":            func(r *store.Record) { r.ExpiresAt = r.CreatedAt.Add(store.MaxTTL + time.Second) },
		"tombstone":           func(r *store.Record) { r.State = store.Revoked },
		"used already":        func(r *store.Record) { r.MaxUses, r.Uses = 2, 1 },
	}
	for name, edit := range bad {
		rec := NewRecord(`{}`, time.Hour)
		edit(&rec)
		if err := s.Put(context.Background(), NewID(t), rec, ""); err == nil {
			t.Errorf("%s: Put succeeded", name)
		}
	}
}

func testUsesRunOut(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := NewRecord(`{"a":1}`, time.Hour)
	rec.MaxUses = 3
	id := put(t, s, rec)
	for i := 1; i <= 3; i++ {
		got, err := s.Consume(ctx, id, time.Now(), "")
		if err != nil {
			t.Fatalf("use %d: %v", i, err)
		}
		if got.Uses != uint32(i) || got.UsesLeft() != int64(3-i) || string(got.Bundle) != `{"a":1}` {
			t.Fatalf("use %d: uses %d, left %d, bundle %s", i, got.Uses, got.UsesLeft(), got.Bundle)
		}
	}
	_, err := s.Consume(ctx, id, time.Now(), "")
	wantErr(t, "fourth use", err, store.ErrUsed)
	got, err := s.Get(ctx, id)
	if err != nil || got.State != store.Used || got.KeyID != rec.KeyID || got.Bundle != nil {
		t.Fatalf("Get of a used token: %+v, %v; want a tombstone keeping the key id", got, err)
	}
	// Unlimited tokens count nothing.
	id = put(t, s, NewRecord(`{}`, time.Hour))
	for i := 0; i < 5; i++ {
		if got, err := s.Consume(ctx, id, time.Now(), ""); err != nil || got.UsesLeft() != -1 {
			t.Fatalf("unlimited use %d: %+v %v", i, got, err)
		}
	}
}

func testReuseGrace(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := NewRecord(`{"a":1}`, time.Hour)
	rec.MaxUses, rec.ReuseGrace = 1, 2*time.Second
	id := put(t, s, rec)
	t0 := time.Now()
	if _, err := s.Consume(ctx, id, t0, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Consume(ctx, id, t0.Add(time.Second), ""); err != nil || string(got.Bundle) != `{"a":1}` {
		t.Fatalf("reuse within the grace: %v", err)
	}
	_, err := s.Consume(ctx, id, t0.Add(2100*time.Millisecond), "")
	wantErr(t, "reuse after the grace", err, store.ErrUsed)
	_, err = s.Consume(ctx, id, t0.Add(time.Second), "")
	wantErr(t, "once used up, always used up", err, store.ErrUsed)
}

func testIdleExpiry(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := NewRecord(`{}`, time.Hour)
	rec.IdleTTL = 400 * time.Millisecond
	id := put(t, s, rec)
	// Each use within the idle time keeps it alive past the first idle
	// deadline.
	end := time.Now().Add(time.Second)
	for time.Now().Before(end) {
		if _, err := s.Consume(ctx, id, time.Now(), ""); err != nil {
			t.Fatalf("use while active: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitGone(t, s, id, 5*time.Second)

	// Never past the absolute expiry.
	rec = NewRecord(`{}`, 300*time.Millisecond)
	rec.IdleTTL = time.Hour
	id = put(t, s, rec)
	if _, err := s.Consume(ctx, id, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	waitGone(t, s, id, 5*time.Second)
}

func testRevoke(t *testing.T, s server.Store) {
	ctx := context.Background()
	id, other := put(t, s, NewRecord(`{}`, time.Hour)), put(t, s, NewRecord(`{}`, time.Hour))
	if err := s.Revoke(ctx, id, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.Consume(ctx, id, time.Now(), "")
	wantErr(t, "Consume after Revoke", err, store.ErrRevoked)
	if err := s.Revoke(ctx, id, time.Now(), ""); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if got, _ := s.Get(ctx, id); got.State != store.Revoked || got.KeyID != "partner-1" {
		t.Fatalf("Get after Revoke: %+v", got)
	}
	if _, err := s.Consume(ctx, other, time.Now(), ""); err != nil {
		t.Fatalf("Revoke hit another record: %v", err)
	}
}

// Revoking a key ends every token it minted so far, whatever the state
// of each, and no token of another key; tokens minted afterwards work.
func testRevokeKey(t *testing.T, s server.Store) {
	ctx := context.Background()
	mint := func(keyID string, uses uint32) store.ID {
		rec := NewRecord(`{}`, time.Hour)
		rec.KeyID, rec.MaxUses = keyID, uses
		return put(t, s, rec)
	}
	fresh, used, limited, other := mint("a", 0), mint("a", 0), mint("a", 3), mint("b", 0)
	if _, err := s.Consume(ctx, used, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RevokeKey(ctx, "a"); err != nil || n != 1 {
		t.Fatalf("RevokeKey = %d, %v; want 1", n, err)
	}
	for name, id := range map[string]store.ID{"fresh": fresh, "used once": used} {
		_, err := s.Consume(ctx, id, time.Now(), "")
		wantErr(t, name, err, store.ErrRevoked)
	}
	_, err := s.Take(ctx, limited, time.Now())
	wantErr(t, "Take", err, store.ErrRevoked)
	if got, err := s.Get(ctx, mint("a", 0)); err != nil || got.State != store.Live || got.KeyEpoch != 1 {
		t.Fatalf("a token minted after the revocation: %+v %v", got, err)
	}
	if res := s.ConsumeMany(ctx, []store.ID{fresh, other}, time.Now(), ""); !errors.Is(res[0].Err, store.ErrRevoked) || res[1].Err != nil {
		t.Fatalf("ConsumeMany: %v, %v", res[0].Err, res[1].Err)
	}
	// Get shows a key-revoked token as revoked, keeping its key for the
	// owner check.
	before := mint("c", 0)
	if _, err := s.RevokeKey(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, before); err != nil || got.State != store.Revoked || got.KeyID != "c" {
		t.Fatalf("Get of a key-revoked token: %+v %v", got, err)
	}
	if n, _ := s.RevokeKey(ctx, "a"); n != 2 {
		t.Fatalf("second RevokeKey = %d", n)
	}
}

func testConsumeMany(t *testing.T, s server.Store) {
	ctx := context.Background()
	single := NewRecord(`{"n":2}`, time.Hour)
	single.MaxUses = 1
	ids := []store.ID{put(t, s, NewRecord(`{"n":0}`, time.Hour)), NewID(t), put(t, s, single), put(t, s, NewRecord(`{"n":3}`, time.Hour))}
	if err := s.Revoke(ctx, ids[3], time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, ids[2]) // the single-use token twice: the second is used
	res := s.ConsumeMany(ctx, ids, time.Now(), "")
	if len(res) != len(ids) {
		t.Fatalf("%d results for %d ids", len(res), len(ids))
	}
	if res[0].Err != nil || string(res[0].Record.Bundle) != `{"n":0}` {
		t.Errorf("0: %+v", res[0])
	}
	wantErr(t, "1", res[1].Err, store.ErrNotFound)
	if res[2].Err != nil || string(res[2].Record.Bundle) != `{"n":2}` {
		t.Errorf("2: %+v", res[2])
	}
	wantErr(t, "3", res[3].Err, store.ErrRevoked)
	wantErr(t, "4", res[4].Err, store.ErrUsed)
}

// GetMany answers as Get for each id, in order, and counts no use.
func testGetMany(t *testing.T, s server.Store) {
	ctx := context.Background()
	single := NewRecord(`{"n":2}`, time.Hour)
	single.MaxUses = 1
	used := put(t, s, single)
	if _, err := s.Consume(ctx, used, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	taken := put(t, s, NewRecord(`{"n":5}`, time.Hour))
	if _, err := s.Take(ctx, taken, time.Now()); err != nil {
		t.Fatal(err)
	}
	ids := []store.ID{put(t, s, NewRecord(`{"n":0}`, time.Hour)), NewID(t), put(t, s, single), put(t, s, NewRecord(`{"n":3}`, time.Hour)), used, taken}
	if err := s.Revoke(ctx, ids[3], time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, ids[2]) // the single-use token twice: both see it live
	if got := s.GetMany(ctx, nil); len(got) != 0 {
		t.Fatalf("GetMany of no ids: %v", got)
	}
	res := s.GetMany(ctx, ids)
	if len(res) != len(ids) {
		t.Fatalf("%d results for %d ids", len(res), len(ids))
	}
	for i, id := range ids {
		want, wantErr := s.Get(ctx, id)
		if !errors.Is(res[i].Err, wantErr) || (wantErr == nil && res[i].Err != nil) {
			t.Errorf("%d: GetMany error %v, Get error %v", i, res[i].Err, wantErr)
		}
		opts := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
		if diff := cmp.Diff(want, res[i].Record, opts); diff != "" {
			t.Errorf("%d: GetMany differs from Get (-want +got)\n%s", i, diff)
		}
	}
	wantErr(t, "1", res[1].Err, store.ErrNotFound)
	for i, want := range map[int]store.State{0: store.Live, 2: store.Live, 3: store.Revoked, 4: store.Used, 5: store.Revoked, 6: store.Live} {
		if res[i].Err != nil || res[i].Record.State != want || res[i].Record.KeyID != "partner-1" {
			t.Errorf("%d: %+v, want state %v", i, res[i], want)
		}
	}
	if string(res[0].Record.Bundle) != `{"n":0}` || res[2].Record.Uses != 0 {
		t.Errorf("live records: %+v, %+v", res[0].Record, res[2].Record)
	}
	// No use was counted: the single-use token still has its one use.
	if got, err := s.Consume(ctx, ids[2], time.Now(), ""); err != nil || got.Uses != 1 {
		t.Fatalf("Consume after GetMany: %+v, %v", got, err)
	}
}

// 50 concurrent uses of a single-use token: exactly one succeeds.
func testSingleUseRace(t *testing.T, s server.Store) {
	rec := NewRecord(`{}`, time.Hour)
	rec.MaxUses = 1
	id := put(t, s, rec)
	var ok, used atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Consume(context.Background(), id, time.Now(), "")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrUsed):
				used.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || used.Load() != 49 {
		t.Fatalf("%d successes and %d used; want 1 and 49", ok.Load(), used.Load())
	}
}

func testPing(t *testing.T, s server.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testKeyIDs(t *testing.T, s server.Store) {
	ctx := context.Background()
	ids, err := s.KeyIDs(ctx)
	if err != nil || len(ids) != 0 {
		t.Fatalf("KeyIDs of a fresh store = %v, %v", ids, err)
	}
	if err := s.SetKeyIDs(ctx, []string{"b", "a", "c"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeyIDs(ctx, []string{"d"}, []string{"a", "nope"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeyIDs(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	ids, err = s.KeyIDs(ctx)
	if err != nil || strings.Join(ids, ",") != "b,c,d" {
		t.Fatalf("KeyIDs = %v, %v; want b,c,d", ids, err)
	}
}
