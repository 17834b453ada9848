package keys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Kinds of key source, as reported by Status.
const (
	KindInline = "inline"
	KindFile   = "file"
	KindHTTP   = "http"
)

// maxPayload caps what is read from a file or a key server, so a runaway
// source cannot exhaust memory.
const maxPayload = 8 << 20

// DefaultHTTPTimeout bounds one request to a key server when
// Options.HTTPClient is nil or has no Timeout of its own.
const DefaultHTTPTimeout = 10 * time.Second

// maxRedirects caps the redirects one fetch from a key server follows.
const maxRedirects = 3

// fetcher reads a key source. fetch returns the current payload, or nil and
// no error when the source says it has not changed since the last payload it
// returned.
type fetcher interface {
	fetch(ctx context.Context) ([]byte, error)
}

// source is a parsed spec.
type source struct {
	kind    string
	display string // safe to log: no secret, no userinfo, no query
	fetcher fetcher
}

// parseSpec tells the kind of source from the spec. Its errors never quote
// the spec, which may be a secret.
func parseSpec(spec string, client *http.Client) (source, error) {
	s := strings.TrimSpace(spec)
	lower := strings.ToLower(s)
	switch {
	case s == "":
		return source{}, errors.New("no API keys configured")
	case strings.HasPrefix(lower, "file://"):
		path := s[len("file://"):]
		if path == "" {
			return source{}, errors.New("file:// URL without a path")
		}
		return source{kind: KindFile, display: "file://" + path, fetcher: &fileSource{path: path}}, nil
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return source{}, errors.New("key server URL does not parse")
		}
		return source{kind: KindHTTP, display: redactURL(u), fetcher: &httpSource{url: u.String(), display: redactURL(u), client: withRedirectPolicy(client)}}, nil
	}
	return source{kind: KindInline, display: KindInline, fetcher: inlineSource(s)}, nil
}

func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User("REDACTED")
	}
	if c.RawQuery != "" {
		c.RawQuery = "REDACTED"
	}
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// withRedirectPolicy returns a copy of client that follows at most
// maxRedirects redirects and never one from https to anything else: a
// source configured as https must not have its key set (secrets, hashes,
// origins) come in clear, open to tampering, because a redirect said so.
// The client's own CheckRedirect, if any, is asked after these checks.
func withRedirectPolicy(client *http.Client) *http.Client {
	c := *client
	next := client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		for _, prev := range via {
			if prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
				// The host is no secret; the path and query may be.
				return fmt.Errorf("refused a redirect from https to %s://%s", req.URL.Scheme, req.URL.Host)
			}
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &c
}

// inlineSource is the spec itself; it never changes.
type inlineSource string

func (s inlineSource) fetch(context.Context) ([]byte, error) { return []byte(s), nil }

// fileSource reads a file, skipping the read while its size and modification
// time stay the same. Content comparison happens in the registry.
type fileSource struct {
	path    string
	seen    bool
	size    int64
	modTime time.Time
}

func (s *fileSource) fetch(context.Context) ([]byte, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, err // *PathError names the path, which is no secret
	}
	if s.seen && fi.Size() == s.size && fi.ModTime().Equal(s.modTime) {
		return nil, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readCapped(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	s.seen, s.size, s.modTime = true, fi.Size(), fi.ModTime()
	return data, nil
}

// httpSource polls a key server with conditional requests.
type httpSource struct {
	url          string // may hold credentials: never logged
	display      string
	client       *http.Client
	etag         string
	lastModified string
}

func (s *httpSource) fetch(ctx context.Context) ([]byte, error) {
	if s.client.Timeout == 0 {
		// A caller's client without a timeout must not hang Run forever.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultHTTPTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: bad request", s.display)
	}
	req.Header.Set("Accept", "application/json, application/yaml;q=0.9")
	if s.etag != "" {
		req.Header.Set("If-None-Match", s.etag)
	}
	if s.lastModified != "" {
		req.Header.Set("If-Modified-Since", s.lastModified)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error quotes the URL, query included; keep only the cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("GET %s: %w", s.display, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
		data, err := readCapped(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("GET %s: read body: %w", s.display, err)
		}
		s.etag, s.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
		return data, nil
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return nil, fmt.Errorf("GET %s: unexpected status %s", s.display, resp.Status)
	}
}

func readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPayload+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPayload {
		return nil, fmt.Errorf("payload larger than %d MiB", maxPayload>>20)
	}
	return data, nil
}
