package keys

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

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
