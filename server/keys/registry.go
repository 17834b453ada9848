package keys

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Registry.Authenticate. Callers test them with errors.Is;
// the wrapped text names the key and origin, never the secret.
var (
	// ErrUnknownKey: the secret is missing, matches no key, or its key is
	// disabled.
	ErrUnknownKey = errors.New("keys: unknown or disabled API key")
	// ErrOriginNotAllowed: a client secret came without an Origin header or
	// from an origin its key does not allow.
	ErrOriginNotAllowed = errors.New("keys: origin not allowed for this key")
)

// DefaultReloadEvery is the default of Options.ReloadEvery.
const DefaultReloadEvery = 30 * time.Second

// Options tune a Registry. The zero value is ready to use.
type Options struct {
	// ReloadEvery is how often Run polls a file or HTTP source. Default
	// DefaultReloadEvery.
	ReloadEvery time.Duration
	// HTTPClient fetches an http:// or https:// source. Default: a client
	// with DefaultHTTPTimeout; a client without a Timeout gets
	// DefaultHTTPTimeout per request.
	// Payloads are capped at 8 MiB either way.
	HTTPClient *http.Client
	// Logger receives reload outcomes (never a secret). Default slog.Default().
	Logger *slog.Logger
	// Now stamps Status. Default time.Now.
	Now func() time.Time
}

// Status describes the source and the last reloads, for health and admin
// endpoints.
type Status struct {
	Source      string    // "inline", a file:// path, or the URL with userinfo and query redacted
	Kind        string    // KindInline, KindFile or KindHTTP
	LastAttempt time.Time // last Reload, whatever its outcome
	LastSuccess time.Time // last Reload that left the registry in sync with the source
	LastError   string    // why the last Reload failed; "" once one succeeds
	Keys        int       // keys in the current set
	Generation  uint64    // bumped each time a new set is installed; the first is 1
}

// Registry holds the current set of partner keys and keeps it in sync with
// its source. All methods are safe for concurrent use. Lookups read an
// immutable snapshot that reloads replace atomically.
type Registry struct {
	src   source
	every time.Duration
	log   *slog.Logger
	now   func() time.Time
	snap  atomic.Pointer[snapshot]

	reloadMu sync.Mutex // serialises Reload; guards the fields below
	lastSum  [32]byte   // SHA-256 of the last payload processed
	lastErr  error      // outcome of processing that payload

	statusMu sync.Mutex
	status   Status
}

// New parses spec (see the package documentation for the accepted forms) and
// loads the keys once. A bad spec or a failed first load is an error that
// names what is wrong, never a secret. Call Run to keep a file or HTTP
// source in sync.
func New(ctx context.Context, spec string, opts Options) (*Registry, error) {
	if opts.ReloadEvery < 0 {
		return nil, errors.New("keys: negative reload period")
	}
	if opts.ReloadEvery == 0 {
		opts.ReloadEvery = DefaultReloadEvery
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	src, err := parseSpec(spec, opts.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	r := &Registry{src: src, every: opts.ReloadEvery, log: opts.Logger.With("source", src.display), now: opts.Now}
	r.status = Status{Source: src.display, Kind: src.kind}
	if strings.HasPrefix(src.display, "http://") {
		r.log.Warn("keys: fetching API keys over plain http")
	}
	if err := r.Reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Run reloads a file or HTTP source every Options.ReloadEvery until ctx is
// done. Failures are logged and kept in Status. For an inline spec there is
// nothing to poll and Run returns at once.
func (r *Registry) Run(ctx context.Context) {
	if r.src.kind == KindInline {
		return
	}
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = r.Reload(ctx) // logged and recorded by Reload
		}
	}
}

// Reload fetches the source now and installs its keys if they changed. On a
// failed fetch, a parse or validation error, or an empty payload it keeps
// the current set and returns the error, which is also logged and recorded
// in Status.
func (r *Registry) Reload(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	at := r.now()
	snap, err := r.load(ctx)
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	r.status.LastAttempt = at
	if err != nil {
		err = fmt.Errorf("keys: load %s: %w", r.src.display, err)
		// New reports a failed first load itself; later, a failure that
		// repeats (an unchanged broken file) is logged once.
		if r.snap.Load() != nil && err.Error() != r.status.LastError {
			r.log.Warn("keys: reload failed, keeping the last good set", "err", err)
		}
		r.status.LastError = err.Error()
		return err
	}
	r.status.LastSuccess, r.status.LastError = at, ""
	if snap != nil {
		r.snap.Store(snap)
		r.status.Keys, r.status.Generation = len(snap.keys), snap.generation
		r.log.Info("keys: loaded", "keys", len(snap.keys), "generation", snap.generation)
	}
	return nil
}

// load returns a new snapshot, or nil when the source content is the one
// processed last time (then the error is that time's).
func (r *Registry) load(ctx context.Context) (*snapshot, error) {
	data, err := r.src.fetcher.fetch(ctx)
	if err != nil {
		return nil, err
	}
	if data == nil {
		if r.snap.Load() == nil && r.lastErr == nil {
			return nil, errors.New("the source answered 'not modified' to the first request")
		}
		return nil, r.lastErr
	}
	sum := sha256.Sum256(data)
	if r.snap.Load() != nil && sum == r.lastSum {
		return nil, r.lastErr
	}
	snap, err := r.parse(data)
	r.lastSum, r.lastErr = sum, err
	return snap, err
}

func (r *Registry) parse(data []byte) (*snapshot, error) {
	var (
		raw []rawKey
		err error
	)
	if r.src.kind == KindInline {
		raw, err = parseInline(string(data))
	} else {
		raw, err = parseDocument(data)
	}
	if err != nil {
		return nil, err
	}
	entries, secrets, err := buildEntries(raw, r.src.display)
	if err != nil {
		return nil, err
	}
	var gen uint64 = 1
	if old := r.snap.Load(); old != nil {
		gen = old.generation + 1
	}
	return newSnapshot(entries, secrets, gen), nil
}

// Authenticate finds the key of a presented secret (the x-api-key header).
// origin is the request's Origin header, "" when there is none. A server
// secret is accepted with or without an origin; a client secret only with an
// origin its key allows. Errors wrap ErrUnknownKey or ErrOriginNotAllowed.
//
// The cost does not depend on the number of keys: the secret's SHA-256
// indexes the set, and the stored hash is compared in constant time.
func (r *Registry) Authenticate(secret, origin string) (Key, error) {
	if secret == "" {
		return Key{}, ErrUnknownKey
	}
	s := r.snap.Load()
	h := sha256.Sum256([]byte(secret))
	ref, ok := s.secrets[h]
	if !ok || subtle.ConstantTimeCompare(ref.hash[:], h[:]) != 1 {
		return Key{}, ErrUnknownKey
	}
	e := &s.keys[ref.key]
	if e.Disabled {
		return Key{}, ErrUnknownKey
	}
	if ref.server {
		return e.public(), nil
	}
	if origin == "" {
		return Key{}, fmt.Errorf("key %q: client secret without an Origin header: %w", e.ID, ErrOriginNotAllowed)
	}
	if !e.allows(origin) {
		return Key{}, fmt.Errorf("key %q: origin %q: %w", e.ID, origin, ErrOriginNotAllowed)
	}
	return e.public(), nil
}

// ByID returns the key named id, disabled or not.
func (r *Registry) ByID(id string) (Key, bool) {
	s := r.snap.Load()
	i, ok := s.byID[id]
	if !ok {
		return Key{}, false
	}
	return s.keys[i].public(), true
}

// OriginAllowed reports whether the browser origin (an Origin header value)
// is allowed for the key keyID, e.g. the key that minted a token presented to
// /verify. It is false for an unknown or disabled key and for origin "".
func (r *Registry) OriginAllowed(keyID, origin string) bool {
	s := r.snap.Load()
	i, ok := s.byID[keyID]
	return ok && origin != "" && !s.keys[i].Disabled && s.keys[i].allows(origin)
}

// AnyOriginAllowed reports whether some enabled key allows the browser
// origin, which is what a CORS preflight can check before it knows the key.
func (r *Registry) AnyOriginAllowed(origin string) bool {
	return origin != "" && r.snap.Load().cors.allows(origin)
}

// Keys returns the current keys sorted by ID.
func (r *Registry) Keys() []Key {
	s := r.snap.Load()
	out := make([]Key, len(s.keys))
	for i := range s.keys {
		out[i] = s.keys[i].public()
	}
	slices.SortFunc(out, func(a, b Key) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Status reports the source and the outcome of the last reloads.
func (r *Registry) Status() Status {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	return r.status
}
