package store

import (
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123)
	want := Record{Bundle: []byte(`{"a":[1,2]}`), KeyID: "partner", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	got, err := decodeRecord(encodeRecord(want))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Bundle) != string(want.Bundle) || got.KeyID != want.KeyID || !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestCodecRejectsCorrupt(t *testing.T) {
	good := encodeRecord(Record{Bundle: []byte(`{}`), KeyID: "k", CreatedAt: time.Now(), ExpiresAt: time.Now()})
	for _, b := range [][]byte{nil, {}, {9}, good[:2], append([]byte{1, 1, 1, 200}, 'x')} {
		if _, err := decodeRecord(b); err == nil {
			t.Errorf("decodeRecord(%v) succeeded", b)
		}
	}
}
