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

	onChange atomic.Pointer[func(Change)]
}

// Change is what a reload changed in the key set: the ids that appeared
// and the ids that went away (disabling a key is neither: its tokens are
// refused while it is disabled and work again when it is enabled).
type Change struct {
	Generation     uint64
	Added, Removed []string
}

// OnChange makes fn receive every later change of the key set, from the
// goroutine that reloaded, after the new set is in force. The first load
// (in New) is not a change. A second call replaces fn.
func (r *Registry) OnChange(fn func(Change)) { r.onChange.Store(&fn) }

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
	var changed *Change
	defer func() { // after the locks are released: fn may call back
		if fn := r.onChange.Load(); fn != nil && changed != nil {
			(*fn)(*changed)
		}
	}()
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
		old := r.snap.Swap(snap)
		r.status.Keys, r.status.Generation = len(snap.keys), snap.generation
		r.log.Info("keys: loaded", "keys", len(snap.keys), "generation", snap.generation)
		if ch := diff(old, snap); old != nil && len(ch.Added)+len(ch.Removed) > 0 {
			changed = &ch
		}
	}
	return nil
}

// diff lists the key ids that next adds to and removes from old, sorted.
func diff(old, next *snapshot) Change {
	ch := Change{Generation: next.generation}
	if old == nil {
		return ch
	}
	for id := range next.byID {
		if _, ok := old.byID[id]; !ok {
			ch.Added = append(ch.Added, id)
		}
	}
	for id := range old.byID {
		if _, ok := next.byID[id]; !ok {
			ch.Removed = append(ch.Removed, id)
		}
	}
	slices.Sort(ch.Added)
	slices.Sort(ch.Removed)
	return ch
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

// SecretKind tells which kind of a key's secrets a request presented.
type SecretKind uint8

// Kinds of secret. A secret listed both ways (a plain-string key) is a
// server secret.
const (
	// ServerSecret is kept on the partner's servers: it may mint, read
	// private fields and manage the key's tokens.
	ServerSecret SecretKind = iota + 1
	// ClientSecret lives in web pages, public by nature: it works only
	// from an origin its key allows, and may mint and verify, nothing more.
	ClientSecret
)

func (k SecretKind) String() string {
	switch k {
	case ServerSecret:
		return "server secret"
	case ClientSecret:
		return "client secret"
	}
	return "no secret"
}

// Authenticate finds the key of a presented secret (the x-api-key header)
// and says which kind of secret it is. origin is the request's Origin
// header, "" when there is none. A server secret is accepted with or
// without an origin; a client secret only with an origin its key allows.
// Errors wrap ErrUnknownKey or ErrOriginNotAllowed.
//
// The cost does not depend on the number of keys: the secret's SHA-256
// indexes the set, and the stored hash is compared in constant time.
func (r *Registry) Authenticate(secret, origin string) (Key, SecretKind, error) {
	if secret == "" {
		return Key{}, 0, ErrUnknownKey
	}
	s := r.snap.Load()
	h := sha256.Sum256([]byte(secret))
	ref, ok := s.secrets[h]
	if !ok || subtle.ConstantTimeCompare(ref.hash[:], h[:]) != 1 {
		return Key{}, 0, ErrUnknownKey
	}
	e := &s.keys[ref.key]
	if e.Disabled {
		return Key{}, 0, ErrUnknownKey
	}
	if ref.server {
		return e.public(), ServerSecret, nil
	}
	if origin == "" {
		return Key{}, 0, fmt.Errorf("key %q: client secret without an Origin header: %w", e.ID, ErrOriginNotAllowed)
	}
	if !e.allows(origin) {
		return Key{}, 0, fmt.Errorf("key %q: origin %q: %w", e.ID, origin, ErrOriginNotAllowed)
	}
	return e.public(), ClientSecret, nil
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
