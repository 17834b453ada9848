package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/store"
)

// Contract cases of a refresh: Take ends a token, Restore undoes that, and
// nothing revoked in between comes back.

func testTake(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := NewRecord(`{"a":1}`, time.Hour)
	id := put(t, s, rec)
	got, err := s.Take(ctx, id, time.Now())
	if err != nil || string(got.Bundle) != `{"a":1}` {
		t.Fatalf("Take: %+v %v", got, err)
	}
	_, err = s.Take(ctx, id, time.Now())
	wantErr(t, "second Take", err, store.ErrRevoked)
	if err := s.Restore(ctx, id, got); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Consume(ctx, id, time.Now(), ""); err != nil || string(got.Bundle) != `{"a":1}` {
		t.Fatalf("Consume after Restore: %+v, %v", got, err)
	}
	wantErr(t, "second Restore", s.Restore(ctx, id, got), store.ErrExists)
}

// A refresh needs a use left: a token whose last use is within its reuse
// grace still verifies, but cannot be taken, and the refused Take changes
// nothing.
func testTakeUsedUp(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := NewRecord(`{"a":1}`, time.Hour)
	rec.MaxUses, rec.ReuseGrace = 1, 10*time.Second
	id := put(t, s, rec)
	t0 := time.Now()
	if _, err := s.Consume(ctx, id, t0, ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.Take(ctx, id, t0.Add(time.Second))
	wantErr(t, "Take of a used-up token within its grace", err, store.ErrUsed)
	if got, err := s.Consume(ctx, id, t0.Add(2*time.Second), ""); err != nil || string(got.Bundle) != `{"a":1}` {
		t.Fatalf("Consume within the grace after the refused Take: %+v, %v", got, err)
	}
	// A token with uses left can be taken.
	rec.MaxUses = 2
	id = put(t, s, rec)
	if _, err := s.Consume(ctx, id, t0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, id, t0); err != nil {
		t.Fatalf("Take with one use left: %v", err)
	}
}

// Until Restore, a taken token is revoked to every read, with its key kept
// for the owner check.
func testTakenReadsAsRevoked(t *testing.T, s server.Store) {
	ctx := context.Background()
	id := put(t, s, NewRecord(`{}`, time.Hour))
	if _, err := s.Take(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, id); err != nil || got.State != store.Revoked || got.KeyID != "partner-1" || got.Bundle != nil {
		t.Fatalf("Get of a taken token: %+v, %v; want a revoked tombstone keeping the key id", got, err)
	}
	_, err := s.Consume(ctx, id, time.Now(), "")
	wantErr(t, "Consume", err, store.ErrRevoked)
	wantErr(t, "ConsumeMany", s.ConsumeMany(ctx, []store.ID{id}, time.Now(), "")[0].Err, store.ErrRevoked)
	_, err = s.Take(ctx, id, time.Now())
	wantErr(t, "Take", err, store.ErrRevoked)
}

// A Revoke that lands between Take and Restore is not lost: it succeeds,
// and Restore then refuses and changes nothing.
func testRevokeThenRestore(t *testing.T, s server.Store) {
	ctx := context.Background()
	id := put(t, s, NewRecord(`{"a":1}`, time.Hour))
	old, err := s.Take(ctx, id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, id, time.Now(), ""); err != nil {
		t.Fatalf("Revoke of a taken token: %v", err)
	}
	wantErr(t, "Restore after Revoke", s.Restore(ctx, id, old), store.ErrRevoked)
	_, err = s.Consume(ctx, id, time.Now(), "")
	wantErr(t, "Consume", err, store.ErrRevoked)
	if got, err := s.Get(ctx, id); err != nil || got.State != store.Revoked || got.KeyID != "partner-1" {
		t.Fatalf("Get: %+v, %v; want the revoked tombstone", got, err)
	}
	wantErr(t, "second Restore", s.Restore(ctx, id, old), store.ErrRevoked)
}

// takeThenRevokeKey puts a record of key "k", takes it as a refresh does,
// and revokes every token of "k" before the refresh goes on.
func takeThenRevokeKey(t *testing.T, s server.Store) (store.ID, store.Record) {
	t.Helper()
	ctx := context.Background()
	rec := NewRecord(`{}`, time.Hour)
	rec.KeyID = "k"
	id := put(t, s, rec)
	old, err := s.Take(ctx, id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeKey(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	return id, old
}

// Revoking the minting key between Take and Restore revokes the restored
// record: it keeps the epoch it was minted under.
func testRevokeKeyThenRestore(t *testing.T, s server.Store) {
	ctx := context.Background()
	id, old := takeThenRevokeKey(t, s)
	if err := s.Restore(ctx, id, old); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got, err := s.Get(ctx, id); err != nil || got.State != store.Revoked {
		t.Fatalf("Get of the restored record: %+v, %v; want revoked", got, err)
	}
	_, err := s.Consume(ctx, id, time.Now(), "")
	wantErr(t, "Consume of the restored record", err, store.ErrRevoked)
}

// Restore brings back only what Take ended.
func testRestoreNeedsTake(t *testing.T, s server.Store) {
	ctx := context.Background()
	rec := NewRecord(`{}`, time.Hour)
	wantErr(t, "Restore of nothing", s.Restore(ctx, NewID(t), rec), store.ErrNotFound)
	id := put(t, s, rec)
	if err := s.Revoke(ctx, id, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Restore over a Revoke", s.Restore(ctx, id, rec), store.ErrRevoked)
	single := NewRecord(`{}`, time.Hour)
	single.MaxUses = 1
	id = put(t, s, single)
	if _, err := s.Consume(ctx, id, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Restore over a used tombstone", s.Restore(ctx, id, single), store.ErrUsed)
	_, err := s.Consume(ctx, id, time.Now(), "")
	wantErr(t, "Consume after the refused Restore", err, store.ErrUsed)
}

// A refresh's successor keeps its predecessor's epoch: a key-wide
// revocation between the Take and the Put ends it too. A fresh mint takes
// the current epoch whatever it carries.
func testSuccessorKeepsEpoch(t *testing.T, s server.Store) {
	ctx := context.Background()
	_, old := takeThenRevokeKey(t, s)
	next := old
	next.SessionStart, next.CreatedAt, next.ExpiresAt = old.CreatedAt, old.CreatedAt.Add(time.Millisecond), old.ExpiresAt
	succ := put(t, s, next)
	_, err := s.Consume(ctx, succ, time.Now(), "")
	wantErr(t, "Consume of a successor minted across a key revocation", err, store.ErrRevoked)

	fresh := NewRecord(`{}`, time.Hour)
	fresh.KeyID = "k" // KeyEpoch 0, behind the key's
	if _, err := s.Consume(ctx, put(t, s, fresh), time.Now(), ""); err != nil {
		t.Errorf("Consume of a fresh mint after the revocation: %v", err)
	}
}
