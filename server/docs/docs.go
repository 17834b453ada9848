// Package docs serves the API reference page: Redoc's standalone bundle,
// vendored from the npm package redoc at Version (see README.md), rendering
// the contract the server itself serves at /openapi.yaml. Nothing is loaded
// from a CDN, so the page works offline.
package docs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paths that Handler serves. Mount Handler on each of them.
const (
	// PagePath is the reference page. PagePath+"/" serves it too.
	PagePath = "/docs"
	// ScriptPath is Redoc's bundle. The page asks for it with ?v=Version,
	// so a new version is fetched at once despite the long cache lifetime.
	ScriptPath = "/docs/redoc.standalone.js"
)

// contentSecurityPolicy keeps the page to this origin: Redoc's telemetry
// (off in index.html anyway) and its CDN icons are refused rather than
// leaking that someone reads the docs. Redoc injects styles at run time,
// hence 'unsafe-inline' for styles only.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; " +
	"style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; " +
	"connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'"

// scriptCacheControl lets browsers and proxies keep the bundle for a year:
// its URL changes with Version.
const scriptCacheControl = "public, max-age=31536000, immutable"

var (
	//go:embed index.html
	indexTemplate string
	//go:embed redoc.standalone.js
	script []byte

	page = []byte(strings.ReplaceAll(indexTemplate, "{{REDOC_VERSION}}", Version))
	// scriptETag names the bundle's content; the gzip form gets its own tag.
	scriptETag = func() string {
		sum := sha256.Sum256(script)
		return `"` + hex.EncodeToString(sum[:12]) + `"`
	}()
	// scriptGzip is the bundle compressed once, on first use, not at start:
	// most processes (healthcheck, migrate) never serve it.
	scriptGzip = sync.OnceValue(func() []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(script) // a bytes.Buffer does not fail
		zw.Close()
		return b.Bytes()
	})
)

// Handler serves the page at PagePath (and PagePath+"/") and the bundle at
// ScriptPath, to GET and HEAD. Other paths get 404 and other methods 405, in
// plain text: mount it on exactly those paths so that the router's own
// errors apply elsewhere.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	var serveFile func(http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case PagePath, PagePath + "/":
		serveFile = servePage
	case ScriptPath:
		serveFile = serveScript
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	serveFile(w, r)
}

func servePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Small, and names the bundle's version: always revalidate.
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(page))
}

func serveScript(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", scriptCacheControl)
	h.Add("Vary", "Accept-Encoding")
	body, etag := script, scriptETag
	if acceptsGzip(r.Header.Values("Accept-Encoding")) {
		body, etag = scriptGzip(), strings.TrimSuffix(scriptETag, `"`)+`-gz"`
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "redoc.standalone.js", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether Accept-Encoding lists gzip (or x-gzip) with a
// non-zero quality. A bare "*" is not taken as gzip: identity is always safe.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(item, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" {
				continue
			}
			if quality(params) == 0 {
				continue
			}
			return true
		}
	}
	return false
}

// quality is the q parameter of one Accept-Encoding item, 1 when absent or
// unreadable.
func quality(params string) float64 {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			return q
		}
	}
	return 1
}
