package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/server/spectest"
	"github.com/tokensvc/tokensvc/store"
)

const (
	partnerKey = "pk_test_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
	otherKey   = "pk_test_other_0123456789abcdef"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type harness struct {
	srv   *Server
	clock *fakeClock
	logs  *syncBuffer
	spec  *spectest.Validator
}

// newHarness serves with an in-memory store on a fake clock, two partner
// keys, and debug logs captured. edit may change the config.
func newHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	mem := store.NewMemory(clock.Now, time.Hour)
	t.Cleanup(func() { mem.Close() })
	reg, err := keys.New(context.Background(), partnerKey+","+otherKey, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := Config{
		Store:    mem,
		Partners: reg,
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:      clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{srv: srv, clock: clock, logs: logs, spec: spectest.New(t)}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends one request through the real handler and checks the response
// against openapi.yaml. Header values may be given as "Name: value".
func (h *harness) do(t *testing.T, method, target, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	for _, hv := range headers {
		name, val, _ := strings.Cut(hv, ": ")
		if name == "RemoteAddr" { // the peer, not a header
			req.RemoteAddr = val
			continue
		}
		req.Header.Set(name, val)
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	h.spec.Check(t, req, res.status, res.header, res.body)
	return res
}

// generate mints a token for a JSON bundle with the partner key.
func (h *harness) generate(t *testing.T, bundle string) string {
	t.Helper()
	res := h.do(t, "POST", "/generate", bundle, "Content-Type: application/json", "x-api-key: "+partnerKey)
	if res.status != 200 {
		t.Fatalf("generate: %d %s", res.status, res.body)
	}
	return res.json(t)["token"].(string)
}

// wantError fails t unless res is the error with this status and code.
func wantError(t *testing.T, res response, status int, code string) {
	t.Helper()
	if res.status != status {
		t.Fatalf("status = %d, want %d; body %s", res.status, status, res.body)
	}
	if got := res.json(t)["error"]; got != code {
		t.Fatalf("error = %v, want %q; body %s", got, code, res.body)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q", ct)
	}
}
