package keys

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeKeys(tb testing.TB, dir, content string) string {
	tb.Helper()
	path := filepath.Join(dir, "keys.json")
	rewrite(tb, path, content, 0)
	return path
}

// rewrite replaces the file and gives it the n-th of a series of distinct
// modification times, so the test does not depend on the file system's
// timestamp resolution.
func rewrite(tb testing.TB, path, content string, n int) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	mtime := time.Date(2025, 1, 1, 0, 0, n, 0, time.UTC)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		tb.Fatal(err)
	}
}

// clock is an injected Options.Now that ticks one second per call.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// syncBuffer collects log output written from Reload.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func wantAuth(tb testing.TB, r *Registry, secret, wantID string) {
	tb.Helper()
	k, _, err := r.Authenticate(secret, "")
	if wantID == "" {
		if !errors.Is(err, ErrUnknownKey) {
			tb.Errorf("Authenticate(%q) = %q, %v; want ErrUnknownKey", secret, k.ID, err)
		}
		return
	}
	if err != nil || k.ID != wantID {
		tb.Errorf("Authenticate(%q) = %q, %v; want key %q", secret, k.ID, err, wantID)
	}
}

func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	path := writeKeys(t, dir, `{"tokens": [{"id": "a", "server_secret": "a-secret"}]}`)
	var logs syncBuffer
	clk := &clock{}
	r := newRegistry(t, "file://"+path, Options{Now: clk.now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	wantAuth(t, r, "a-secret", "a")
	st := r.Status()
	if st.Kind != KindFile || st.Source != "file://"+path || st.Generation != 1 || st.Keys != 1 || st.LastError != "" || st.LastSuccess != st.LastAttempt {
		t.Fatalf("Status() after New = %+v", st)
	}

	// A changed file is picked up; a removed key stops working.
	rewrite(t, path, "tokens:\n  - {id: b, server_secret: b-secret}\n  - {id: c, server_secret: c-secret}\n", 1)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r, "a-secret", "")
	wantAuth(t, r, "b-secret", "b")
	if st := r.Status(); st.Generation != 2 || st.Keys != 2 {
		t.Fatalf("Status() after a change = %+v", st)
	}

	// Unchanged, and touched with the same content: no new generation.
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	rewrite(t, path, "tokens:\n  - {id: b, server_secret: b-secret}\n  - {id: c, server_secret: c-secret}\n", 2)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Generation != 2 || st.LastSuccess != st.LastAttempt {
		t.Fatalf("Status() after no change = %+v", st)
	}
	good := r.Status()

	// Broken, empty, missing: the last good set stays and the error shows.
	bad := []struct{ name, content, wantErr string }{
		{"broken", `{"tokens": [{"id": "d", "server_secret": "d-secret"`, "yaml: "},
		{"broken, unchanged", "", "yaml: "},
		{"empty payload", `{"tokens": []}`, "no keys"},
		{"empty file", " ", "empty document"},
		{"invalid key", `{"tokens": [{"id": "d", "server_secret": "sha256:d-secret"}]}`, `key "d": a secret starting`},
		{"missing file", "", "no such file"},
	}
	for i, c := range bad {
		switch c.name {
		case "broken, unchanged":
		case "missing file":
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		default:
			rewrite(t, path, c.content, 10+i)
		}
		err := r.Reload(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Fatalf("%s: Reload() = %v, want an error containing %q", c.name, err, c.wantErr)
		}
		st := r.Status()
		if st.LastError != err.Error() || st.Generation != 2 || st.Keys != 2 || st.LastSuccess != good.LastSuccess || !st.LastAttempt.After(good.LastAttempt) {
			t.Errorf("%s: Status() = %+v", c.name, st)
		}
		wantAuth(t, r, "b-secret", "b")
		wantAuth(t, r, "d-secret", "")
	}

	// Fixed: back in sync, error cleared.
	rewrite(t, path, `[{"id": "d", "server_secret": "d-secret"}]`, 20)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r, "d-secret", "d")
	wantAuth(t, r, "b-secret", "")
	if st := r.Status(); st.LastError != "" || st.Generation != 3 {
		t.Errorf("Status() after the fix = %+v", st)
	}
	for _, s := range []string{"a-secret", "b-secret", "d-secret"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs reveal %q:\n%s", s, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "reload failed"); n != len(bad)-1 {
		t.Errorf("logged %d failures, want %d (a repeated error is logged once):\n%s", n, len(bad)-1, logs.String())
	}
}

func TestRunPollsTheSource(t *testing.T) {
	path := writeKeys(t, t.TempDir(), `{"tokens": [{"id": "a", "server_secret": "a-secret"}]}`)
	r := newRegistry(t, "file://"+path, Options{ReloadEvery: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.Run(ctx)
		close(done)
	}()
	rewrite(t, path, `{"tokens": [{"id": "b", "server_secret": "b-secret"}]}`, 1)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, _, err := r.Authenticate("b-secret", ""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not pick up the change; Status() = %+v", r.Status())
		}
	}
	wantAuth(t, r, "a-secret", "")
	cancel()
	<-done
}

func TestRunInlineReturns(t *testing.T) {
	r := newRegistry(t, "s", Options{})
	r.Run(context.Background()) // returns at once: nothing to poll
	if err := r.Reload(context.Background()); err != nil || r.Status().Generation != 1 {
		t.Errorf("Reload() of an inline spec = %v, generation %d", err, r.Status().Generation)
	}
}

func TestOnChangeReportsAddedAndRemoved(t *testing.T) {
	path := writeKeys(t, t.TempDir(), `[{"id": "a", "server_secret": "a-secret"}, {"id": "b", "server_secret": "b-secret"}]`)
	r := newRegistry(t, "file://"+path, Options{})
	var got []Change
	r.OnChange(func(ch Change) {
		r.Status() // may call back into the registry: no lock is held
		got = append(got, ch)
	})
	rewrite(t, path, `[{"id": "b", "server_secret": "b-secret"}, {"id": "c", "server_secret": "c-secret"}]`, 1)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Disabling a key and an unchanged reload are not changes of the set.
	rewrite(t, path, `[{"id": "b", "server_secret": "b-secret", "disabled": true}, {"id": "c", "server_secret": "c-secret"}]`, 2)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []Change{{Generation: 2, Added: []string{"c"}, Removed: []string{"a"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}
