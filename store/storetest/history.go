package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/store"
)

// The history contract: written with the change it tells of, the newest
// store.HistorySize entries, as long as the record lives and no longer.

// historyTests are the history's part of the contract suite.
var historyTests = []struct {
	name string
	fn   func(t *testing.T, s server.Store)
}{
	{"HistoryOfUses", testHistoryOfUses},
	{"HistoryOff", testHistoryOff},
	{"HistoryKeepsRefusals", testHistoryKeepsRefusals},
	{"HistoryIsCapped", testHistoryCapped},
	{"HistoryGoesWithTheRecord", testHistoryGoes},
	{"HistorySlidesWithIdleExpiry", testHistoryIdle},
	{"HistoryOfABatch", testHistoryBatch},
	{"HistoryThroughTakeAndRestore", testHistoryTake},
	{"NotesRejectBadInput", testNotesReject},
}

// entry is what a test expects of a history entry.
type entry struct {
	Note    string
	Refused error
}

func historyOf(t *testing.T, s server.Store, id store.ID) []store.Entry {
	t.Helper()
	h, err := s.History(context.Background(), id)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	return h
}

// wantHistory compares the notes and refusals of id's history, oldest
// first, and checks that its times do not go back.
func wantHistory(t *testing.T, s server.Store, id store.ID, want ...entry) []store.Entry {
	t.Helper()
	h := historyOf(t, s, id)
	got := make([]entry, len(h))
	for i, e := range h {
		got[i] = entry{e.Note, e.Refused}
		if i > 0 && e.At.Before(h[i-1].At) {
			t.Errorf("entry %d (%s) is older than the one before it", i, e.At)
		}
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); diff != "" {
		t.Fatalf("history (-want +got)\n%s", diff)
	}
	return h
}

func withHistory(rec store.Record) store.Record {
	rec.History = true
	return rec
}

func testHistoryOfUses(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := withHistory(NewRecord(`{}`, time.Hour))
	id := NewID(t)
	if err := s.Put(ctx, id, rec, "minted"); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(time.Second).Truncate(time.Millisecond)
	for _, note := range []string{"one", "two"} {
		got, err := s.Consume(ctx, id, at, note)
		if err != nil || !got.History {
			t.Fatalf("Consume: %+v %v", got, err)
		}
	}
	h := wantHistory(t, s, id, entry{Note: "minted"}, entry{Note: "one"}, entry{Note: "two"})
	if !h[0].At.Equal(rec.CreatedAt) || !h[1].At.Equal(at) {
		t.Errorf("times %s and %s, want the record's creation %s and the use's now %s", h[0].At, h[1].At, rec.CreatedAt, at)
	}
	if got, err := s.Get(ctx, id); err != nil || !got.History {
		t.Fatalf("Get does not report the history: %+v %v", got, err)
	}
}

func testHistoryOff(t *testing.T, s server.Store) {
	ctx := context.Background()
	id := put(t, s, NewRecord(`{}`, time.Hour))
	if _, err := s.Consume(ctx, id, time.Now(), "use"); err != nil {
		t.Fatal(err)
	}
	if err := s.Annotate(ctx, time.Now(), store.Note{ID: id, Text: "note"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, id, time.Now(), "revoke"); err != nil {
		t.Fatal(err)
	}
	wantHistory(t, s, id)
	wantHistory(t, s, NewID(t)) // no record at all
	if err := s.Annotate(ctx, time.Now(), store.Note{ID: NewID(t), Text: "x"}); err != nil {
		t.Fatalf("Annotate with no record: %v", err)
	}
}

// A used-up or revoked token presented again is refused and kept in the
// history, with the tombstone's key; so are revocations and notes, on
// live tokens and tombstones.
func testHistoryKeepsRefusals(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := withHistory(NewRecord(`{}`, time.Hour))
	rec.MaxUses = 1
	id := NewID(t)
	if err := s.Put(ctx, id, rec, "m"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consume(ctx, id, time.Now(), "u1"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Consume(ctx, id, time.Now(), "u2")
	wantErr(t, "second use", err, store.ErrUsed)
	if got.KeyID != rec.KeyID || got.State != store.Used {
		t.Errorf("the refusal's record is %+v, want the tombstone with key %q", got, rec.KeyID)
	}
	if err := s.Annotate(ctx, time.Now(), store.Note{ID: id, Text: "n"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, id, time.Now(), "rv"); err != nil {
		t.Fatal(err)
	}
	wantHistory(t, s, id, entry{Note: "m"}, entry{Note: "u1"}, entry{Note: "u2", Refused: store.ErrUsed}, entry{Note: "n"}, entry{Note: "rv"})

	// Revoked, one by one or with its key.
	other := withHistory(NewRecord(`{}`, time.Hour))
	other.KeyID = "history-key"
	a, b := NewID(t), NewID(t)
	for _, x := range []store.ID{a, b} {
		if err := s.Put(ctx, x, other, "m"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke(ctx, a, time.Now(), "rv"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeKey(ctx, "history-key"); err != nil {
		t.Fatal(err)
	}
	for _, x := range []store.ID{a, b} {
		got, err := s.Consume(ctx, x, time.Now(), "again")
		wantErr(t, "a revoked token", err, store.ErrRevoked)
		if got.KeyID != "history-key" {
			t.Errorf("the refusal's record is %+v, want key history-key", got)
		}
	}
	wantHistory(t, s, a, entry{Note: "m"}, entry{Note: "rv"}, entry{Note: "again", Refused: store.ErrRevoked})
	wantHistory(t, s, b, entry{Note: "m"}, entry{Note: "again", Refused: store.ErrRevoked})
}

func testHistoryCapped(t *testing.T, s server.Store) {
	ctx := context.Background()
	id := NewID(t)
	if err := s.Put(ctx, id, withHistory(NewRecord(`{}`, time.Hour)), "m"); err != nil {
		t.Fatal(err)
	}
	n := store.HistorySize + 8
	for i := range n {
		if _, err := s.Consume(ctx, id, time.Now(), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	h := historyOf(t, s, id)
	if len(h) != store.HistorySize || h[0].Note != fmt.Sprint(n-store.HistorySize) || h[len(h)-1].Note != fmt.Sprint(n-1) {
		t.Fatalf("%d entries from %q to %q; want the newest %d, %d to %d", len(h), h[0].Note, h[len(h)-1].Note, store.HistorySize, n-store.HistorySize, n-1)
	}
}

// A history ends with its record: at expiry, live or tombstone.
func testHistoryGoes(t *testing.T, s server.Store) {
	ctx := context.Background()
	live, used := NewID(t), NewID(t)
	rec := withHistory(NewRecord(`{}`, 300*time.Millisecond))
	rec.MaxUses = 1
	for _, id := range []store.ID{live, used} {
		if err := s.Put(ctx, id, rec, "m"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Consume(ctx, used, time.Now(), "u"); err != nil {
		t.Fatal(err)
	}
	wantHistory(t, s, used, entry{Note: "m"}, entry{Note: "u"})
	waitGone(t, s, live, 5*time.Second)
	waitGone(t, s, used, 5*time.Second)
	wantHistory(t, s, live)
	wantHistory(t, s, used)
}

// A sliding expiry slides the history too: it lives while the record does.
func testHistoryIdle(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := withHistory(NewRecord(`{}`, time.Hour))
	rec.IdleTTL = 400 * time.Millisecond
	id := NewID(t)
	if err := s.Put(ctx, id, rec, "m"); err != nil {
		t.Fatal(err)
	}
	uses := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); uses++ {
		if _, err := s.Consume(ctx, id, time.Now(), "u"); err != nil {
			t.Fatalf("use while active: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h := historyOf(t, s, id); len(h) != min(uses+1, store.HistorySize) {
		t.Fatalf("%d entries after %d uses past the first idle deadline, want %d", len(h), uses, uses+1)
	}
	waitGone(t, s, id, 5*time.Second)
	wantHistory(t, s, id)
}

func testHistoryBatch(t *testing.T, s server.Store) {
	ctx := context.Background()
	a, b := NewID(t), NewID(t)
	rec := withHistory(NewRecord(`{}`, time.Hour))
	for _, id := range []store.ID{a, b} {
		if err := s.Put(ctx, id, rec, "m"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke(ctx, b, time.Now(), "rv"); err != nil {
		t.Fatal(err)
	}
	res := s.ConsumeMany(ctx, []store.ID{a, b, a}, time.Now(), "batch")
	if res[0].Err != nil || !errors.Is(res[1].Err, store.ErrRevoked) || res[2].Err != nil {
		t.Fatalf("ConsumeMany: %v %v %v", res[0].Err, res[1].Err, res[2].Err)
	}
	wantHistory(t, s, a, entry{Note: "m"}, entry{Note: "batch"}, entry{Note: "batch"})
	wantHistory(t, s, b, entry{Note: "m"}, entry{Note: "rv"}, entry{Note: "batch", Refused: store.ErrRevoked})
	if err := s.Annotate(ctx, time.Now(), store.Note{ID: a, Text: "na"}, store.Note{ID: b, Text: "nb"}); err != nil {
		t.Fatal(err)
	}
	wantHistory(t, s, b, entry{Note: "m"}, entry{Note: "rv"}, entry{Note: "batch", Refused: store.ErrRevoked}, entry{Note: "nb"})
}

// Take and Restore leave the history as it is (the caller notes a
// refresh); a taken token presented again is refused as revoked.
func testHistoryTake(t *testing.T, s server.Store) {
	ctx := context.Background()
	id := NewID(t)
	if err := s.Put(ctx, id, withHistory(NewRecord(`{}`, time.Hour)), "m"); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Take(ctx, id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Consume(ctx, id, time.Now(), "u")
	wantErr(t, "a taken token", err, store.ErrRevoked)
	if err := s.Restore(ctx, id, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consume(ctx, id, time.Now(), "u2"); err != nil {
		t.Fatal(err)
	}
	wantHistory(t, s, id, entry{Note: "m"}, entry{Note: "u", Refused: store.ErrRevoked}, entry{Note: "u2"})
}

func testNotesReject(t *testing.T, s server.Store) {
	ctx := context.Background()
	long := string(make([]byte, store.MaxNoteSize+1))
	id := NewID(t)
	if err := s.Put(ctx, id, withHistory(NewRecord(`{}`, time.Hour)), long); err == nil {
		t.Error("Put took a note over MaxNoteSize")
	}
	id = put(t, s, withHistory(NewRecord(`{}`, time.Hour)))
	if _, err := s.Consume(ctx, id, time.Now(), long); err == nil {
		t.Error("Consume took a note over MaxNoteSize")
	}
	if err := s.Annotate(ctx, time.Now(), store.Note{ID: id, Text: long}); err == nil {
		t.Error("Annotate took a note over MaxNoteSize")
	}
}
