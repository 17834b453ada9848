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

// redirector answers 302 for the paths in to and hands others to next.
type redirector struct {
	mu   sync.Mutex
	to   map[string]string // path -> Location
	next http.Handler
}

func (d *redirector) set(to map[string]string) { d.mu.Lock(); d.to = to; d.mu.Unlock() }

func (d *redirector) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	d.mu.Lock()
	loc, ok := d.to[req.URL.Path]
	d.mu.Unlock()
	if ok {
		http.Redirect(w, req, loc, http.StatusFound)
		return
	}
	d.next.ServeHTTP(w, req)
}

// An https key server redirected to http is refused before anything is
// sent over http, and the last good set stays; a redirect that stays on
// https is followed.
func TestHTTPSourceRefusesDowngrade(t *testing.T) {
	plain := &keyServer{}
	plain.serve(`{"tokens": [{"id": "evil", "server_secret": "evil-secret"}]}`, `"p1"`, 0)
	plainSrv := httptest.NewServer(plain)
	defer plainSrv.Close()
	ks := &keyServer{modified: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	ks.serve(`{"tokens": [{"id": "a", "server_secret": "a-secret"}]}`, `"v1"`, 0)
	d := &redirector{next: ks}
	srv := httptest.NewTLSServer(d)
	defer srv.Close()
	spec := strings.Replace(srv.URL, "https://", "https://partner:pa55word@", 1) + "/keys?token=hunter2"
	r := newRegistry(t, spec, Options{HTTPClient: srv.Client()})
	wantAuth(t, r, "a-secret", "a")

	d.set(map[string]string{"/keys": plainSrv.URL + "/keys?token=hunter2"})
	err := r.Reload(context.Background())
	want := "refused a redirect from https to " + plainSrv.URL
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("Reload() = %v, want an error ending %q", err, want)
	}
	for _, s := range []string{"hunter2", "pa55word"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("the error reveals %q: %v", s, err)
		}
	}
	if req, _, _ := plain.counts(); req != 0 {
		t.Errorf("the http server got %d requests, want none", req)
	}
	if st := r.Status(); st.LastError != err.Error() || st.Generation != 1 {
		t.Errorf("Status() = %+v", st)
	}
	wantAuth(t, r, "a-secret", "a")
	wantAuth(t, r, "evil-secret", "")

	// https to https, even through another path, is fine.
	ks.serve(`{"tokens": [{"id": "b", "server_secret": "b-secret"}]}`, `"v2"`, 0)
	d.set(map[string]string{"/keys": srv.URL + "/moved"})
	if err := r.Reload(context.Background()); err != nil {
		t.Fatalf("Reload() through an https redirect: %v", err)
	}
	wantAuth(t, r, "b-secret", "b")
}

// At most maxRedirects redirects are followed; one more is an error that
// keeps the last good set. Plain http may redirect within http.
func TestHTTPSourceRedirectCap(t *testing.T) {
	ks := &keyServer{modified: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	ks.serve(`{"tokens": [{"id": "a", "server_secret": "a-secret"}]}`, `"v1"`, 0)
	d := &redirector{next: ks}
	srv := httptest.NewServer(d)
	defer srv.Close()
	chain := func(n int) map[string]string {
		to := map[string]string{}
		for i := 0; i < n; i++ {
			from := "/keys"
			if i > 0 {
				from = fmt.Sprintf("/hop%d", i)
			}
			to[from] = fmt.Sprintf("%s/hop%d", srv.URL, i+1)
		}
		return to
	}
	d.set(chain(maxRedirects))
	r := newRegistry(t, srv.URL+"/keys", Options{})
	wantAuth(t, r, "a-secret", "a")

	ks.serve(`{"tokens": [{"id": "b", "server_secret": "b-secret"}]}`, `"v2"`, 0)
	d.set(chain(maxRedirects + 1))
	err := r.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d redirects", maxRedirects)) {
		t.Fatalf("Reload() = %v, want the redirect cap", err)
	}
	wantAuth(t, r, "a-secret", "a")
	wantAuth(t, r, "b-secret", "")
}
