package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/store"
)

// Contract cases of markers (PutMarker, GetMarker).

// A marker keeps its bytes exactly, is written once (a second PutMarker is
// ErrExists and changes nothing), and is apart from records.
func testMarkers(t *testing.T, s server.Store) {
	ctx := context.Background()
	name := NewID(t)
	_, err := s.GetMarker(ctx, name)
	wantErr(t, "GetMarker of nothing", err, store.ErrNotFound)
	value := make([]byte, store.MaxMarkerSize)
	if _, err := rand.Read(value); err != nil {
		t.Fatal(err)
	}
	value[0], value[1] = 0, '\n' // any bytes
	if err := s.PutMarker(ctx, name, value, time.Hour); err != nil {
		t.Fatalf("PutMarker: %v", err)
	}
	wantErr(t, "second PutMarker", s.PutMarker(ctx, name, []byte("other"), time.Hour), store.ErrExists)
	got, err := s.GetMarker(ctx, name)
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("GetMarker = %x, %v; want the first value", got, err)
	}
	if err := s.PutMarker(ctx, NewID(t), nil, time.Hour); err != nil {
		t.Fatalf("PutMarker of an empty value: %v", err)
	}
	// A record and a marker may share an ID without meeting.
	if err := s.Put(ctx, name, NewRecord(`{}`, time.Hour), ""); err != nil {
		t.Fatalf("Put under a marker's name: %v", err)
	}
	id := put(t, s, NewRecord(`{}`, time.Hour))
	_, err = s.GetMarker(ctx, id)
	wantErr(t, "GetMarker under a record's ID", err, store.ErrNotFound)
	if err := s.PutMarker(ctx, id, []byte("x"), time.Hour); err != nil {
		t.Fatalf("PutMarker under a record's ID: %v", err)
	}
	if _, err := s.Consume(ctx, id, time.Now(), ""); err != nil {
		t.Fatalf("the record under a marker's name: %v", err)
	}
}

// A marker is gone after its ttl, and its name can be used again.
func testMarkersExpire(t *testing.T, s server.Store) {
	ctx := context.Background()
	name := NewID(t)
	if err := s.PutMarker(ctx, name, []byte("a"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetMarker(ctx, name); err != nil || string(got) != "a" {
		t.Fatalf("GetMarker right after PutMarker: %q, %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.GetMarker(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("GetMarker: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the marker outlived its ttl by seconds")
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err := s.PutMarker(ctx, name, []byte("b"), time.Hour); err != nil {
		t.Fatalf("PutMarker after expiry: %v", err)
	}
	if got, err := s.GetMarker(ctx, name); err != nil || string(got) != "b" {
		t.Fatalf("GetMarker of the new marker: %q, %v", got, err)
	}
}

func testMarkersReject(t *testing.T, s server.Store) {
	ctx := context.Background()
	bad := map[string]struct {
		value []byte
		ttl   time.Duration
	}{
		"too big":       {make([]byte, store.MaxMarkerSize+1), time.Hour},
		"no ttl":        {nil, 0},
		"under a ms":    {nil, 999 * time.Microsecond},
		"negative ttl":  {nil, -time.Second},
		"beyond MaxTTL": {nil, store.MaxTTL + time.Millisecond},
	}
	for what, tc := range bad {
		name := NewID(t)
		if err := s.PutMarker(ctx, name, tc.value, tc.ttl); err == nil || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: PutMarker = %v, want a plain error", what, err)
		}
		if _, err := s.GetMarker(ctx, name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: the refused marker was stored: %v", what, err)
		}
	}
	if err := s.PutMarker(ctx, NewID(t), nil, store.MaxTTL); err != nil {
		t.Errorf("PutMarker for MaxTTL: %v", err)
	}
}
