package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEncode(t *testing.T) {
	at := time.Date(2026, 11, 22, 11, 44, 0, 123456789, time.FixedZone("x", 3600))
	cases := []struct {
		name string
		e    Event
		want string
	}{
		{"Mint", Event{Time: at, Event: Mint, Outcome: OK, RequestID: "r1", Route: "/generate", Client: "192.0.2.1", KeyID: "acme", TokenID: "00ff",
			TTL: 600, Policy: &Policy{Uses: 1, ReuseGrace: 10, Private: []string{"auth"}}},
			`{"kind":"audit","time":"2026-11-22T10:44:00.123456Z","event":"mint","outcome":"ok","request_id":"r1","route":"/generate","client":"192.0.2.1","key_id":"acme","token_id":"00ff","ttl":600,"policy":{"uses":1,"reuse_grace":10,"private":["auth"]}}`},
		{"Reuse", Event{Time: at, Event: Reuse, Outcome: "token_used", Route: "/verify", Client: "192.0.2.1", TokenID: "00ff", SuspectedTheft: true},
			`{"kind":"audit","time":"2026-11-22T10:44:00.123456Z","event":"reuse","outcome":"token_used","route":"/verify","client":"192.0.2.1","token_id":"00ff","suspected_theft":true}`},
		{"KeyReload", Event{Time: at, Event: KeyReload, Outcome: OK, Generation: 3, Added: []string{"b"}, Removed: []string{"a"}},
			`{"kind":"audit","time":"2026-11-22T10:44:00.123456Z","event":"key_reload","outcome":"ok","generation":3,"added":["b"],"removed":["a"]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// memSink keeps lines, or fails while broken is set.
type memSink struct {
	mu     sync.Mutex
	lines  []string
	broken atomic.Bool
	writes atomic.Int64
	hold   chan struct{} // if set, each Write waits for it
}

func (m *memSink) Write(_ context.Context, lines [][]byte) error {
	if m.hold != nil {
		<-m.hold
	}
	m.writes.Add(1)
	if m.broken.Load() {
		return errors.New("sink broken")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range lines {
		m.lines = append(m.lines, string(l))
	}
	return nil
}

func (m *memSink) count() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.lines) }

func TestRequiredFailsClosed(t *testing.T) {
	sink := &memSink{}
	var failed atomic.Int64
	r, err := New(sink, Options{Required: true, Failed: func(n int) { failed.Add(int64(n)) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Record(ctx, Event{Event: Mint, Outcome: OK}); err != nil {
		t.Fatalf("a working sink: %v", err)
	}
	sink.broken.Store(true)
	if err := r.Record(ctx, Event{Event: Mint, Outcome: OK}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a broken sink: got %v, want ErrUnavailable", err)
	}
	if sink.count() != 1 || failed.Load() != 1 {
		t.Fatalf("lines %d, failures %d; want 1 and 1", sink.count(), failed.Load())
	}
}

func TestQueuedCountsFailures(t *testing.T) {
	sink := &memSink{}
	var failed atomic.Int64
	r, err := New(sink, Options{Failed: func(n int) { failed.Add(int64(n)) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sink.broken.Store(true)
	for range 10 {
		if err := r.Record(ctx, Event{Event: Use, Outcome: OK}); err != nil {
			t.Fatalf("not required: Record must not fail, got %v", err)
		}
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if failed.Load() != 10 {
		t.Fatalf("failures = %d, want 10", failed.Load())
	}
	// After Close, events are written at once.
	sink.broken.Store(false)
	if err := r.Record(ctx, Event{Event: KeyReload, Outcome: OK}); err != nil || sink.count() != 1 {
		t.Fatalf("after Close: %v, %d lines", err, sink.count())
	}
}

func TestQueueFullIsCounted(t *testing.T) {
	sink := &memSink{hold: make(chan struct{})}
	var failed atomic.Int64
	r, err := New(sink, Options{Queue: 4, Batch: 1, Failed: func(n int) { failed.Add(int64(n)) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 20 {
		r.Record(ctx, Event{Event: Use, Outcome: OK})
	}
	close(sink.hold)
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := int64(sink.count()) + failed.Load(); got != 20 || failed.Load() == 0 {
		t.Fatalf("written %d + failed %d, want 20 with some failed", sink.count(), failed.Load())
	}
}

func TestQueuedBatchesAndFlushesAtClose(t *testing.T) {
	sink := &memSink{}
	r, err := New(sink, Options{Batch: 64})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				r.Record(ctx, Event{Event: Use, Outcome: OK, TokenID: strings.Repeat("a", i+j%3)})
			}
		})
	}
	wg.Wait()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if sink.count() != 800 {
		t.Fatalf("%d lines, want 800", sink.count())
	}
	t.Logf("800 events in %d writes", sink.writes.Load())
}

func TestNilRecorder(t *testing.T) {
	var r *Recorder
	if r.On() || r.Required() || r.Record(context.Background(), Event{}) != nil || r.Close(context.Background()) != nil {
		t.Fatal("a nil Recorder records nothing and never fails")
	}
}

func TestFileSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for range 2 { // appends, across opens
		f, err := OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Write(context.Background(), [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`)}); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	b, _ := os.ReadFile(path)
	if want := "{\"a\":1}\n{\"b\":2}\n{\"a\":1}\n{\"b\":2}\n"; string(b) != want {
		t.Fatalf("file holds %q", b)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	// A full disk: every write fails.
	full, err := OpenFile("/dev/full")
	if err != nil {
		t.Skip("no /dev/full here")
	}
	defer full.Close()
	if err := full.Write(context.Background(), [][]byte{[]byte("x")}); err == nil {
		t.Fatal("a write to /dev/full succeeded")
	}
	var buf bytes.Buffer
	if err := NewWriter(&buf).Write(context.Background(), [][]byte{[]byte("x")}); err != nil || buf.String() != "x\n" {
		t.Fatalf("%v %q", err, buf.String())
	}
}
