// Package server is tokensvc's HTTP API: the handlers of the strict server
// interface generated from openapi.yaml, the middleware they need, and the
// one place where errors become HTTP statuses.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/github.com/labstack/echo/otelecho"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/server/docs"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/server/ratelimit"
	"github.com/tokensvc/tokensvc/store"
)

// Store keeps token records. It is the store's contract, one method at a
// time; package store/storetest checks every implementation against it.
// Errors in general: store.ErrNotFound for no live record, store.ErrUsed
// and store.ErrRevoked for tombstones, store.ErrExists when an ID or name
// is taken, store.ErrUnavailable when the backend does not answer
// (store.ErrFull, which is also store.ErrUnavailable, when Redis refused a
// write for lack of memory: reads, and uses of tokens without a use limit,
// still work then); anything else is unexpected.
//
// A record minted with History keeps a history (store.Entry), written by
// the same atomic step as the change it tells of: Put, Consume,
// ConsumeMany and Revoke add an entry with the caller's note (at most
// store.MaxNoteSize bytes, opaque to the store), Consume and ConsumeMany
// also when they refuse a used-up or revoked token. The history keeps the
// newest store.HistorySize entries and lives exactly as long as the
// record. On a Redis that is out of memory, entries may be dropped; the
// calls go on as they would without a history.
type Store interface {
	// Put stores rec, a new live record (no uses yet, a lifetime of a
	// millisecond to store.MaxTTL), under id, with the minting key's
	// current epoch; with rec.History, its history starts with note at
	// rec.CreatedAt. Errors: store.ErrExists when id is taken (the stored
	// record stays as it was), store.ErrUnavailable; an invalid record or
	// note is a plain error.
	Put(ctx context.Context, id store.ID, rec store.Record, note string) error
	// Get returns the record under id without using it: the live record,
	// or a tombstone (State store.Used or store.Revoked, keeping only the
	// KeyID; a token whose key was revoked, or that Take ended, reads as
	// Revoked). Errors: store.ErrNotFound (never existed, or expired),
	// store.ErrUnavailable.
	Get(ctx context.Context, id store.ID) (store.Record, error)
	// GetMany is Get for many ids at once (one round trip per Redis node),
	// counting no use. Results are in the order of ids; each Err is
	// store.ErrNotFound for an id with no record or store.ErrUnavailable,
	// else Record is the live record or its tombstone, as Get.
	GetMany(ctx context.Context, ids []store.ID) []store.Result
	// Consume uses the token once, atomically: it counts the use (with a
	// use limit), slides the idle expiry and returns the record with the
	// use counted. A used-up token still works within its ReuseGrace after
	// its last use. The use, or the refusal of a used-up or revoked token,
	// goes into the history with note. Errors: store.ErrNotFound (also
	// once now is past ExpiresAt), store.ErrUsed, store.ErrRevoked (with
	// either, the record returned is the tombstone: State, KeyID),
	// store.ErrUnavailable (store.ErrFull when a use must be counted on a
	// full Redis; nothing is counted then).
	Consume(ctx context.Context, id store.ID, now time.Time, note string) (store.Record, error)
	// ConsumeMany is Consume for many ids at once (one round trip per Redis
	// node), each with note. Results are in the order of ids, each with
	// Consume's errors; an id given twice is used twice.
	ConsumeMany(ctx context.Context, ids []store.ID, now time.Time, note string) []store.Result
	// Take ends a live token and returns it, in one atomic step, for a
	// refresh. A token with a use limit needs a use left: once its uses ran
	// out Take is store.ErrUsed, even within the reuse grace, and leaves the
	// token as it is. Errors: store.ErrNotFound, store.ErrUsed,
	// store.ErrRevoked (with either, the record returned says State and
	// KeyID), store.ErrUnavailable.
	Take(ctx context.Context, id store.ID, now time.Time) (store.Record, error)
	// Restore undoes a Take whose follow-up failed: it puts rec, the record
	// Take returned, back under id with the TTL it had, only if the token
	// is still as Take left it (checked atomically). Errors:
	// store.ErrRevoked when it was revoked since (nothing changes),
	// store.ErrNotFound when nothing is there any more, store.ErrExists
	// when a live record is (restored already), store.ErrUsed when a used
	// tombstone is, store.ErrUnavailable. A key revoked since the Take still
	// revokes the restored record.
	Restore(ctx context.Context, id store.ID, rec store.Record) error
	// Revoke ends a token now, and says so in its history with note.
	// Revoking a used, revoked or taken token succeeds (a taken one is then
	// never restored). Errors: store.ErrNotFound, store.ErrUnavailable.
	Revoke(ctx context.Context, id store.ID, now time.Time, note string) error
	// Annotate adds each note to its token's history at now, for what the
	// caller decided or saw on its own; a token without a history, or
	// without a record, gets nothing. Several notes are one round trip per
	// Redis node. Errors: store.ErrUnavailable; a bad note is a plain
	// error.
	Annotate(ctx context.Context, now time.Time, notes ...store.Note) error
	// History returns the token's history, oldest entry first; none for a
	// token minted without one, or with no record. Errors:
	// store.ErrUnavailable.
	History(ctx context.Context, id store.ID) ([]store.Entry, error)
	// RevokeKey revokes every token keyID has minted so far, whatever their
	// number, and returns the key's new epoch; tokens minted afterwards
	// work. Errors: store.ErrUnavailable.
	RevokeKey(ctx context.Context, keyID string) (uint64, error)
	// KeyIDs lists the partner key ids SetKeyIDs recorded, shared by every
	// instance on the store, so that a key missing at start-up is known to
	// have gone. Errors: ErrUnavailable.
	KeyIDs(ctx context.Context) ([]string, error)
	// SetKeyIDs records the ids of add and forgets those of remove.
	// Errors: ErrUnavailable.
	SetKeyIDs(ctx context.Context, add, remove []string) error
	// PutMarker stores value (at most store.MaxMarkerSize opaque bytes)
	// under name for ttl (a millisecond to store.MaxTTL), unless a marker
	// has that name: store.ErrExists then, and the marker stays as it was.
	// Markers and records live apart: a name may also be a record's ID.
	// Errors: store.ErrExists, store.ErrUnavailable; a bad value or ttl is
	// a plain error.
	PutMarker(ctx context.Context, name store.ID, value []byte, ttl time.Duration) error
	// GetMarker returns the value of the marker called name. Errors:
	// store.ErrNotFound when there is none (never stored, or expired),
	// store.ErrUnavailable.
	GetMarker(ctx context.Context, name store.ID) ([]byte, error)
	// Ping reports whether the backend answers: nil or
	// store.ErrUnavailable.
	Ping(ctx context.Context) error
}

// Partners is the partner key registry. Authenticate says which kind of
// secret matched; its errors wrap keys.ErrUnknownKey or
// keys.ErrOriginNotAllowed. ByID finds disabled keys too.
type Partners interface {
	Authenticate(secret, origin string) (keys.Key, keys.SecretKind, error)
	ByID(id string) (keys.Key, bool)
	OriginAllowed(keyID, origin string) bool
	AnyOriginAllowed(origin string) bool
	Keys() []keys.Key
	Status() keys.Status
	Reload(ctx context.Context) error
}

// Limiter counts events per key under a limit, shared by every instance
// where the store is shared (see package ratelimit). A negative n gives
// back -n events' worth, never beyond a full bucket: reserve what a request
// may cost, refund what it did not use. Errors mean the limits are out of
// reach (store.ErrUnavailable from Redis).
type Limiter interface {
	AllowN(ctx context.Context, key string, l ratelimit.Limit, n int) (ratelimit.Decision, error)
}

// Config is what a Server needs. Zero durations and sizes take the defaults
// named on each field (the Default constants below).
type Config struct {
	Store    Store
	Partners Partners
	// Logger gets the warnings and one "request" line per request. The
	// request lines carry no caller (their source would be the same line
	// every time), so a handler with AddSource shows none for them.
	Logger *slog.Logger
	// TokenTTL is the lifetime of a token when neither the request nor the
	// partner key names one. Default DefaultTokenTTL.
	TokenTTL time.Duration
	// MaxTokenTTL caps every token's lifetime. Default DefaultMaxTokenTTL.
	MaxTokenTTL time.Duration
	// MaxBodyBytes caps the /generate body. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// StoreTimeout bounds each store operation; past it the request is
	// answered 503. Default DefaultStoreTimeout.
	StoreTimeout time.Duration
	// MaxSessionLifetime caps a refresh chain, from its first token's
	// minting. Default DefaultMaxSession.
	MaxSessionLifetime time.Duration
	// MaxBatch caps the tokens of one /verify/batch. Default DefaultMaxBatch.
	MaxBatch int
	// AdminToken guards /admin/...; empty turns the admin API off.
	AdminToken string
	// IdempotencySecret derives the token of an Idempotency-Key; without
	// it, Idempotency-Key is refused. Use the same secret on every
	// instance sharing a store.
	IdempotencySecret []byte
	// KeepRemovedKeyTokens keeps the tokens of a partner key removed from
	// the key source: refused while it is absent, they work again if it
	// comes back within their lifetime. Default false: removing a key
	// revokes its tokens for good (see KeysChanged).
	KeepRemovedKeyTokens bool
	// ForwardCookie names a cookie /auth reads the token from, if set.
	ForwardCookie string
	// ForwardFields are the bundle fields /auth sends as X-Token-* headers:
	// public fields to any caller, private fields too to a caller that
	// proves to be the gateway (ForwardSecret).
	ForwardFields []string
	// ForwardSecret is what a gateway sends as X-Gateway-Secret on /auth
	// to get private fields as well; a present but different header is
	// answered 401. Empty: /auth sends public fields only, to everyone.
	// A secret: never logged.
	ForwardSecret string
	// ForwardCacheTTL, if set, lets a gateway cache /auth's 200 for a
	// token with neither a use limit nor an idle expiry, for this long at
	// most and never past the token's expiry: the answer carries
	// Cache-Control: private, max-age=<seconds> (and X-Accel-Expires, the
	// same seconds, for nginx's proxy_cache). A gateway that caches it
	// lets a token revoked meanwhile through until then. Zero: every
	// answer is no-store, as any other.
	ForwardCacheTTL time.Duration
	// Limiter keeps the rate limits; nil turns them off.
	Limiter Limiter
	// GenerateRate limits minting per partner key, unless the key has a
	// rate_limit of its own. Zero: no limit.
	GenerateRate ratelimit.Limit
	// FailureRate limits failed token checks (verify, batch, refresh,
	// forward auth) per client address: the brute-force guard. Zero: off.
	FailureRate ratelimit.Limit
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// when telling the client address; empty: the peer address is it.
	TrustedProxies []*net.IPNet
	// Metrics, if set, receives the Prometheus collectors of requests,
	// tokens, store calls and the partner key source. Nil: no metrics.
	Metrics *prometheus.Registry
	// ServeMetrics serves Metrics at GET /metrics of this handler. Off, the
	// caller may serve MetricsHandler elsewhere.
	ServeMetrics bool
	// TracerProvider, if set, traces every request with otelecho, which
	// records the route, method, status and path, never the query (a path
	// can still hold a mistyped token: cmd/tokensvc's provider replaces it
	// by the route), and puts the trace id in the access log. Nil: no
	// tracing.
	TracerProvider trace.TracerProvider
	// Propagator reads a caller's trace context. Default: W3C Trace
	// Context (traceparent).
	Propagator propagation.TextMapPropagator
	// Audit, if set, receives the audit trail: an event per request of an
	// API operation (one per token of a batch) and per key reload (see
	// package audit). Nil: no audit trail. Call Close at exit to write the
	// events still queued.
	Audit audit.Sink
	// AuditRequired fails a request whose audit event could not be
	// recorded (503 audit_unavailable) instead of answering it unrecorded.
	// Default false: events are queued and written in the background; a
	// failed write is counted (tokensvc_audit_write_failures_total) and
	// logged.
	AuditRequired bool
	// NoTokenHistory mints tokens without a history (store.Record.History).
	// Default false: every token keeps its recent events, shown to the
	// minting partner by GET /tokens/{id}. Tokens keep what they were
	// minted with.
	NoTokenHistory bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of Config: the one place their values are written. cmd/tokensvc's
// settings table (and so -h and the README) reads them from here.
const (
	// DefaultTokenTTL is the default of Config.TokenTTL.
	DefaultTokenTTL = time.Hour
	// DefaultMaxTokenTTL is the default of Config.MaxTokenTTL.
	DefaultMaxTokenTTL = 24 * time.Hour
	// DefaultMaxBodyBytes is the default of Config.MaxBodyBytes.
	DefaultMaxBodyBytes = 16 << 10
	// DefaultStoreTimeout is the default of Config.StoreTimeout.
	DefaultStoreTimeout = time.Second
	// DefaultMaxSession is the default of Config.MaxSessionLifetime.
	DefaultMaxSession = 24 * time.Hour
	// DefaultMaxBatch is the default of Config.MaxBatch.
	DefaultMaxBatch = 100
)

// Server serves the API. It is an http.Handler.
type Server struct {
	cfg       Config
	log       *slog.Logger
	echo      *echo.Echo
	metrics   *metrics // nil: no metrics
	access    *access
	guard     *guard
	keySync   keySync
	fullBurst burst // the store refusing writes, logged once per burst
	// trail is the audit trail, nil when off; trailMetrics count what it
	// flags, nil without metrics.
	trail        *audit.Recorder
	trailMetrics *trailMetrics
}

var _ api.StrictServerInterface = (*Server)(nil)

// New checks cfg and returns a ready Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Partners == nil {
		return nil, errors.New("server: Store and Partners are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	setDefault(&cfg.TokenTTL, DefaultTokenTTL)
	setDefault(&cfg.MaxTokenTTL, DefaultMaxTokenTTL)
	setDefault(&cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&cfg.StoreTimeout, DefaultStoreTimeout)
	setDefault(&cfg.MaxSessionLifetime, DefaultMaxSession)
	setDefault(&cfg.MaxBatch, DefaultMaxBatch)
	if cfg.TokenTTL < time.Second || cfg.MaxTokenTTL < cfg.TokenTTL {
		return nil, errors.New("server: need 1s <= TokenTTL <= MaxTokenTTL")
	}
	if cfg.Limiter != nil && !cfg.FailureRate.Zero() && cfg.FailureRate.N < cfg.MaxBatch {
		return nil, fmt.Errorf("server: the brute-force guard allows %d failed checks, fewer than a batch (%d): every full batch would be refused", cfg.FailureRate.N, cfg.MaxBatch)
	}
	if cfg.Propagator == nil {
		cfg.Propagator = propagation.TraceContext{}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, access: newAccess(cfg.Partners, cfg.AdminToken, cfg.ForwardSecret)}
	s.guard = &guard{limiter: cfg.Limiter, limit: cfg.FailureRate, log: cfg.Logger, now: cfg.Now, blocked: map[string]time.Time{}, suspects: map[string]time.Time{}}
	// Tracing and request metrics wrap observe: the span is in the context
	// the access log reads, and the status they record is the one written.
	var outer []echo.MiddlewareFunc
	if cfg.TracerProvider != nil {
		outer = append(outer, otelecho.Middleware("", otelecho.WithTracerProvider(cfg.TracerProvider),
			otelecho.WithPropagators(cfg.Propagator),
			otelecho.WithSkipper(func(c echo.Context) bool { return c.Path() == MetricsPath })))
	}
	if cfg.Metrics != nil {
		var err error
		if s.metrics, err = newMetrics(cfg.Metrics, cfg.Partners); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
		requests, err := newRequestMetrics(cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
		outer = append(outer, requests.middleware)
		s.cfg.Store = meteredStore{next: cfg.Store, m: s.metrics}
		if s.trailMetrics, err = newTrailMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
		if err := cfg.Metrics.Register(storeProbe{store: cfg.Store, timeout: s.cfg.StoreTimeout}); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	var err error
	if s.trail, err = newTrail(cfg, s.trailMetrics); err != nil {
		return nil, fmt.Errorf("server: audit: %w", err)
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = echo.ExtractIPDirect()
	if len(cfg.TrustedProxies) > 0 {
		trust := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range cfg.TrustedProxies {
			trust = append(trust, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(trust...)
	}
	e.Use(outer...)
	e.Use(s.observe, s.recoverPanic, s.cors())
	// Every operation: the brute-force guard, then the access table, before
	// any body is read: strangers cost nothing. Then the audit trail's
	// record of every refusal from there on.
	checked := func(op Op, more ...echo.MiddlewareFunc) []echo.MiddlewareFunc {
		return append([]echo.MiddlewareFunc{s.guardFailures(op), s.authorize(op), s.audited(op)}, more...)
	}
	api.RegisterHandlersWithOptions(e, api.NewStrictHandler(s, nil), api.RegisterHandlersOptions{
		OperationMiddlewares: map[string][]echo.MiddlewareFunc{
			"generate":             checked(OpMint, s.limitMinting, s.readBundle),
			"verify":               checked(OpVerify),
			"verifyBatch":          checked(OpBatch, s.limitJSONBody),
			"refresh":              checked(OpRefresh),
			"getToken":             checked(OpLookup),
			"revokeToken":          checked(OpRevoke),
			"adminListKeys":        checked(OpAdminListKeys),
			"adminReload":          checked(OpAdminReload),
			"adminRevokeToken":     checked(OpAdminRevokeToken),
			"adminRevokeKeyTokens": checked(OpAdminRevokeKeyTokens),
		},
	})
	forward := checked(OpForward)
	e.Any("/auth", s.forwardAuth, forward...)
	e.Any("/auth/*", s.forwardAuth, forward...)
	// The API reference page: HTML, outside the contract.
	docsHandler := echo.WrapHandler(docs.Handler())
	for _, path := range []string{docs.PagePath, docs.PagePath + "/", docs.ScriptPath} {
		e.Match([]string{http.MethodGet, http.MethodHead}, path, docsHandler)
	}
	if cfg.Metrics != nil && cfg.ServeMetrics {
		e.Match([]string{http.MethodGet, http.MethodHead}, MetricsPath, echo.WrapHandler(MetricsHandler(cfg.Metrics)))
	}
	s.echo = e
	return s, nil
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// storeCtx bounds one store operation, so an outage is a prompt 503.
func (s *Server) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.StoreTimeout)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
