package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	k, err := r.Authenticate(secret, "")
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

// keyServer is a key server that honours conditional requests and records
// what it was sent.
type keyServer struct {
	mu          sync.Mutex
	body        string
	etag        string
	modified    time.Time
	status      int // answered instead of the body when not 0
	requests    int
	conditional int // requests carrying both If-None-Match and If-Modified-Since
	notModified int
	lastINM     string
	lastIMS     string
	auth        string
}

func (s *keyServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.lastINM, s.lastIMS = req.Header.Get("If-None-Match"), req.Header.Get("If-Modified-Since")
	if user, pass, ok := req.BasicAuth(); ok {
		s.auth = user + ":" + pass
	}
	if s.lastINM != "" && s.lastIMS != "" {
		s.conditional++
	}
	if s.status != 0 {
		http.Error(w, "key server down", s.status)
		return
	}
	if s.lastINM == s.etag {
		s.notModified++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", s.etag)
	w.Header().Set("Last-Modified", s.modified.Format(http.TimeFormat))
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, s.body)
}

func (s *keyServer) serve(body, etag string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.etag, s.status = body, etag, status
	s.modified = s.modified.Add(time.Hour)
}

func (s *keyServer) counts() (requests, conditional, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.conditional, s.notModified
}

func TestHTTPSource(t *testing.T) {
	ks := &keyServer{modified: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	ks.serve(`{"tokens": [{"id": "a", "server_secret": "a-secret"}, {"id": "b", "server_secret": "b-secret"}]}`, `"v1"`, 0)
	srv := httptest.NewServer(ks)
	defer srv.Close()
	var logs syncBuffer
	spec := strings.Replace(srv.URL, "http://", "http://partner:pa55word@", 1) + "/keys?token=hunter2"
	r := newRegistry(t, spec, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), HTTPClient: srv.Client()})
	wantAuth(t, r, "a-secret", "a")
	if req, cond, _ := ks.counts(); req != 1 || cond != 0 {
		t.Fatalf("after New: %d requests, %d conditional; want 1, 0", req, cond)
	}
	if ks.auth != "partner:pa55word" {
		t.Errorf("basic auth from the URL = %q", ks.auth)
	}
	st := r.Status()
	if st.Kind != KindHTTP || st.Source != strings.Replace(srv.URL, "http://", "http://REDACTED@", 1)+"/keys?REDACTED" {
		t.Errorf("Status() = %+v", st)
	}

	// Conditional request: 304, nothing changes.
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if req, cond, nm := ks.counts(); req != 2 || cond != 1 || nm != 1 {
		t.Fatalf("after a reload: %d requests, %d conditional, %d not modified; want 2, 1, 1", req, cond, nm)
	}
	if ks.lastINM != `"v1"` || ks.lastIMS != "Wed, 01 Jan 2025 01:00:00 GMT" {
		t.Errorf("If-None-Match %q, If-Modified-Since %q", ks.lastINM, ks.lastIMS)
	}
	if st := r.Status(); st.Generation != 1 || st.LastError != "" {
		t.Errorf("Status() after 304 = %+v", st)
	}

	// A changed set: the removed key stops working, the added one works.
	ks.serve(`{"tokens": [{"id": "b", "server_secret": "b-secret"}, {"id": "c", "server_secret": "c-secret"}]}`, `"v2"`, 0)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r, "a-secret", "")
	wantAuth(t, r, "b-secret", "b")
	wantAuth(t, r, "c-secret", "c")
	if st := r.Status(); st.Generation != 2 || st.Keys != 2 {
		t.Errorf("Status() after a change = %+v", st)
	}

	// Failures keep the last good set.
	failures := []struct {
		name, body, etag string
		status           int
		want             string
	}{
		{"500", "", `"v2"`, http.StatusInternalServerError, "unexpected status 500"},
		{"broken body", `{"tokens": [`, `"v3"`, 0, "yaml: "},
		{"304 to the broken body", `{"tokens": [`, `"v3"`, 0, "yaml: "},
		{"empty payload", `{"tokens": []}`, `"v4"`, 0, "no keys"},
		{"too large", `{"tokens": []}` + strings.Repeat(" ", maxPayload), `"v5"`, 0, "larger than 8 MiB"},
	}
	for _, f := range failures {
		ks.serve(f.body, f.etag, f.status)
		err := r.Reload(context.Background())
		if err == nil || !strings.Contains(err.Error(), f.want) {
			t.Fatalf("%s: Reload() = %v, want an error containing %q", f.name, err, f.want)
		}
		if st := r.Status(); st.LastError != err.Error() || st.Generation != 2 {
			t.Errorf("%s: Status() = %+v", f.name, st)
		}
		wantAuth(t, r, "b-secret", "b")
		wantAuth(t, r, "c-secret", "c")
	}
	if _, _, nm := ks.counts(); nm != 2 {
		t.Errorf("%d not-modified answers, want 2", nm)
	}

	ks.serve(`{"tokens": [{"id": "d", "server_secret": "d-secret"}]}`, `"v6"`, 0)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantAuth(t, r, "d-secret", "d")
	wantAuth(t, r, "b-secret", "")
	if st := r.Status(); st.LastError != "" || st.Generation != 3 {
		t.Errorf("Status() after recovery = %+v", st)
	}
	for _, s := range []string{"a-secret", "b-secret", "pa55word", "hunter2"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs reveal %q:\n%s", s, logs.String())
		}
	}
}

func TestHTTPFirstLoadFails(t *testing.T) {
	ks := &keyServer{}
	ks.serve("", "", http.StatusServiceUnavailable)
	srv := httptest.NewServer(ks)
	defer srv.Close()
	_, err := New(context.Background(), srv.URL+"/keys?token=hunter2", Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "unexpected status 503") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("New() = %v; want the status, without the query", err)
	}
	srv.Close()
	_, err = New(context.Background(), srv.URL+"/keys?token=hunter2", Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("New() against a closed server = %v; want an error without the query", err)
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
		if _, err := r.Authenticate("b-secret", ""); err == nil {
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
