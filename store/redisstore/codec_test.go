package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokensvc/tokensvc/store"
)

func TestCodecRoundTrip(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123)
	recs := []store.Record{
		{Bundle: []byte(`{"a":[1,2]}`), KeyID: "partner", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{Bundle: []byte(`{}`), Private: []byte(`{"auth":"x"}`), KeyID: "p", KeyEpoch: 300, CreatedAt: now, ExpiresAt: now.Add(time.Minute),
			SessionStart: now.Add(-time.Hour), MaxUses: 70000, ReuseGrace: 5 * time.Second, IdleTTL: 30 * time.Second},
		{Bundle: []byte(`{"b":1}`), KeyID: "h", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 1, History: true},
	}
	for _, want := range recs {
		got, err := decodeRecord(encodeRecord(want))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Fatalf("(-want +got)\n%s", diff)
		}
	}
	for _, state := range []byte{byte(store.Used), byte(store.Revoked), stateTaken} {
		want := store.State(min(state, byte(store.Revoked))) // a taken token reads as revoked
		got, err := decodeRecord(encodeTombstone(state, "partner"))
		if err != nil || got.State != want || got.KeyID != "partner" || got.History {
			t.Fatalf("tombstone of state %d: %+v %v", state, got, err)
		}
	}
	// A tombstone keeps the history flag, as the scripts write it.
	b := appendBytes([]byte{codecVersion, byte(store.Used), fHistory}, []byte("partner"))
	if got, err := decodeRecord(b); err != nil || !got.History || got.State != store.Used {
		t.Fatalf("tombstone with a history: %+v %v", got, err)
	}
}

func TestCodecRejectsCorrupt(t *testing.T) {
	good := encodeRecord(store.Record{Bundle: []byte(`{}`), KeyID: "k", CreatedAt: time.Now(), ExpiresAt: time.Now(), MaxUses: 2})
	for _, b := range [][]byte{nil, {}, {9}, {2, 7, 0}, good[:2], good[:5], good[:14], {2, 0, 0, 1, 1, 200}, {codecVersion, stateTaken + 1, 0, 1, 'k'}} {
		if _, err := decodeRecord(b); err == nil {
			t.Errorf("decodeRecord(%v) succeeded", b)
		}
	}
}

// encodeTombstone is what the scripts write for a tombstone: version,
// state, no flags, the key id.
func encodeTombstone(state byte, keyID string) []byte {
	return appendBytes([]byte{codecVersion, state, 0}, []byte(keyID))
}
