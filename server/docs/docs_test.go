package docs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, path string
		header             map[string]string
		wantStatus         int
		wantHeader         map[string]string
		wantBody           func(t *testing.T, body []byte)
	}{
		{
			name: "page", method: http.MethodGet, path: "/docs",
			wantStatus: http.StatusOK,
			wantHeader: map[string]string{
				"Content-Type":            "text/html; charset=utf-8",
				"Cache-Control":           "no-cache",
				"X-Content-Type-Options":  "nosniff",
				"Content-Security-Policy": contentSecurityPolicy,
			},
			wantBody: checkPage,
		},
		{
			name: "page with a trailing slash", method: http.MethodGet, path: "/docs/",
			wantStatus: http.StatusOK,
			wantHeader: map[string]string{"Content-Type": "text/html; charset=utf-8"},
			wantBody:   checkPage,
		},
		{
			name: "script", method: http.MethodGet, path: "/docs/redoc.standalone.js?v=" + Version,
			wantStatus: http.StatusOK,
			wantHeader: map[string]string{
				"Content-Type":           "text/javascript; charset=utf-8",
				"Cache-Control":          "public, max-age=31536000, immutable",
				"Content-Encoding":       "",
				"ETag":                   scriptETag,
				"Vary":                   "Accept-Encoding",
				"X-Content-Type-Options": "nosniff",
			},
			wantBody: checkScript,
		},
		{
			name: "script gzipped", method: http.MethodGet, path: "/docs/redoc.standalone.js",
			header:     map[string]string{"Accept-Encoding": "br;q=1.0, gzip;q=0.8"},
			wantStatus: http.StatusOK,
			wantHeader: map[string]string{
				"Content-Type":     "text/javascript; charset=utf-8",
				"Content-Encoding": "gzip",
				"Cache-Control":    "public, max-age=31536000, immutable",
			},
			wantBody: func(t *testing.T, body []byte) {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatalf("not gzip: %v", err)
				}
				plain, err := io.ReadAll(zr)
				if err != nil {
					t.Fatalf("gunzip: %v", err)
				}
				checkScript(t, plain)
			},
		},
		{
			name: "script revalidated", method: http.MethodGet, path: "/docs/redoc.standalone.js",
			header:     map[string]string{"If-None-Match": scriptETag},
			wantStatus: http.StatusNotModified,
			wantBody:   wantEmpty,
		},
		{
			name: "script HEAD", method: http.MethodHead, path: "/docs/redoc.standalone.js",
			wantStatus: http.StatusOK,
			wantHeader: map[string]string{"Content-Type": "text/javascript; charset=utf-8"},
			wantBody:   wantEmpty,
		},
		{
			name: "POST", method: http.MethodPost, path: "/docs",
			wantStatus: http.StatusMethodNotAllowed,
			wantHeader: map[string]string{"Allow": "GET, HEAD"},
		},
		{
			name: "unknown file", method: http.MethodGet, path: "/docs/openapi.yaml",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "not under /docs", method: http.MethodGet, path: "/redoc.standalone.js",
			wantStatus: http.StatusNotFound,
		},
	}
	h := Handler()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(c.method, c.path, nil)
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.wantStatus {
				t.Fatalf("status %d, want %d; body %.200q", rec.Code, c.wantStatus, rec.Body.String())
			}
			for k, want := range c.wantHeader {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if c.wantBody != nil {
				c.wantBody(t, rec.Body.Bytes())
			}
		})
	}
}

// TestServer fetches the page and then the script the page names, through a
// real HTTP server and client, as a browser would.
func TestServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)

	page := get(t, srv.URL+PagePath, "text/html; charset=utf-8")
	checkPage(t, page)
	src := regexp.MustCompile(`<script src="([^"]+)"`).FindSubmatch(page)
	if src == nil {
		t.Fatalf("no script in the page:\n%s", page)
	}
	// Go's transport asks for gzip and undoes it, so this covers the gzip path.
	checkScript(t, get(t, srv.URL+string(src[1]), "text/javascript; charset=utf-8"))
}

func get(t *testing.T, url, wantType string) []byte {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != wantType {
		t.Fatalf("GET %s: %s, Content-Type %q, want 200 and %q", url, res.Status, res.Header.Get("Content-Type"), wantType)
	}
	return body
}

func checkPage(t *testing.T, body []byte) {
	t.Helper()
	page := string(body)
	for _, want := range []string{
		"<title>tokensvc API</title>",
		`<redoc spec-url="/openapi.yaml" disable-telemetry="true">`,
		`src="` + ScriptPath + `?v=` + Version + `"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(page, "{{") {
		t.Errorf("the page has an unfilled placeholder:\n%s", page)
	}
	// Offline: the page must load nothing from elsewhere.
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).FindString(page); m != "" {
		t.Errorf("the page loads from another host (%s):\n%s", m, page)
	}
}

func checkScript(t *testing.T, body []byte) {
	t.Helper()
	if !bytes.Equal(body, script) {
		t.Fatalf("got %d bytes, not the %d of the embedded bundle", len(body), len(script))
	}
}

// TestVendored checks that the embedded bundle is the one update.sh vendored
// as Version, not a hand edit.
func TestVendored(t *testing.T) {
	t.Parallel()
	if sum := sha256.Sum256(script); hex.EncodeToString(sum[:]) != scriptSHA256 {
		t.Errorf("redoc.standalone.js has SHA-256 %x, update.sh recorded %s: re-vendor with update.sh", sum, scriptSHA256)
	}
	if !bytes.Contains(script, []byte(`"`+Version+`"`)) {
		t.Errorf("redoc.standalone.js does not mention version %q", Version)
	}
}

func wantEmpty(t *testing.T, body []byte) {
	t.Helper()
	if len(body) != 0 {
		t.Errorf("want no body, got %d bytes", len(body))
	}
}

func TestAcceptsGzip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"gzip"}, true},
		{[]string{"gzip, deflate, br, zstd"}, true},
		{[]string{"br", "GZIP"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.000"}, false},
		{[]string{"gzip;q=0.001"}, true},
		{[]string{"*"}, false},
		{[]string{"deflate, identity"}, false},
		{[]string{"gzipx"}, false},
	}
	for _, c := range cases {
		if got := acceptsGzip(c.header); got != c.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", c.header, got, c.want)
		}
	}
}
