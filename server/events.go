package server

import (
	"context"
	"errors"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/store"
)

// The audit trail (package audit): every request of an API operation is
// one event, a batch one per token, whatever its outcome. Handlers record
// their own successes with record, with what only they know (the policy,
// the new token id); every answer that is not a success goes through
// refused, one function, which names its kind, spots reuse and blocks, and
// records it. Refusals of the middleware that runs before the audited one
// (the guard, authorize) call refused themselves.
//
// Events of a request that could not be recorded while the trail is
// required (Config.AuditRequired) answer 503 audit_unavailable.

// opKinds is the audit event kind of each operation.
var opKinds = [numOps]audit.Kind{
	OpMint:                 audit.Mint,
	OpVerify:               audit.Use,
	OpReadPrivate:          audit.Use,
	OpBatch:                audit.Use,
	OpRefresh:              audit.Refresh,
	OpLookup:               audit.Lookup,
	OpRevoke:               audit.Revoke,
	OpForward:              audit.Use,
	OpForwardPrivate:       audit.Use,
	OpAdminListKeys:        audit.Admin,
	OpAdminReload:          audit.Admin,
	OpAdminRevokeToken:     audit.Revoke,
	OpAdminRevokeKeyTokens: audit.Revoke,
}

// describe fills in what op's events always say: who revokes what, which
// admin call.
func describe(op Op, e *audit.Event) {
	switch op {
	case OpRevoke:
		e.By, e.Scope = audit.ByPartner, audit.ScopeToken
	case OpAdminRevokeToken:
		e.By, e.Scope = audit.ByAdmin, audit.ScopeToken
	case OpAdminRevokeKeyTokens:
		e.By, e.Scope = audit.ByAdmin, audit.ScopeKey
	case OpAdminListKeys:
		e.Action = "list_keys"
	case OpAdminReload:
		e.Action = "reload"
	}
}

// reuse says whether an answer to op is the reuse of an ended token: a
// token presented to be used or refreshed after it was used up or revoked
// (refreshed away, or its key revoked, removed or disabled). It is what a
// stolen copy of a token looks like, so it is flagged as suspected theft,
// counted in tokensvc_reuse_total and kept in the token's history.
func reuse(op Op, code api.ErrorError) bool {
	switch op {
	case OpVerify, OpBatch, OpForward, OpRefresh:
		return code == api.ErrorErrorTokenUsed || code == api.ErrorErrorTokenRevoked
	}
	return false
}

// event starts an event of kind for the request of ctx: its id, route,
// client and the caller's partner key.
func (s *Server) event(ctx context.Context, op Op) audit.Event {
	ri := info(ctx)
	e := audit.Event{Time: s.cfg.Now(), Event: opKinds[op], Outcome: audit.OK,
		RequestID: ri.id, Route: ri.route, Client: ri.addr, KeyID: ri.caller.key.ID}
	describe(op, &e)
	return e
}

// record writes e to the trail. Its error, when the trail is required and
// e could not be recorded, is the request's answer.
func (s *Server) record(ctx context.Context, e audit.Event) error {
	if err := s.trail.Record(ctx, e); err != nil {
		return recorded{errAuditDown}
	}
	return nil
}

// recorded is an error whose event is in the trail already (or could not
// be recorded, errAuditDown): refused passes it on as it is.
type recorded struct{ error }

func (r recorded) Unwrap() error { return r.error }

// subjectError is a refusal about one token, or one partner key: its
// event names them.
type subjectError struct {
	err     error
	tokenID string // "" for none
	keyID   string // the partner key that minted the token, or the key acted on; "" when unknown
}

func (e *subjectError) Error() string { return e.err.Error() }
func (e *subjectError) Unwrap() error { return e.err }

// aboutToken marks err as a refusal about the token id, minted by keyID
// if known (nil stays nil).
func aboutToken(err error, id store.ID, keyID string) error {
	if err == nil {
		return nil
	}
	return &subjectError{err: err, tokenID: id.String(), keyID: keyID}
}

// aboutKey marks err as a refusal about the partner key keyID.
func aboutKey(err error, keyID string) error {
	if err == nil {
		return nil
	}
	return &subjectError{err: err, keyID: keyID}
}

// refused records the event of a request of op that is answered err (a
// refusal, a block or a failure) and returns the answer: err, or
// errAuditDown when the trail is required and the event could not be
// recorded.
func (s *Server) refused(ctx context.Context, op Op, err error) error {
	if errors.As(err, new(recorded)) {
		return err
	}
	if rerr := s.record(ctx, s.refusal(ctx, op, err)); rerr != nil {
		return rerr
	}
	return recorded{err}
}

// refusal is the event of a request of op answered err, or of a token of
// a batch refused with err: its kind (a reuse or a block replaces op's),
// the code answered, the token it is about. It counts reuses.
func (s *Server) refusal(ctx context.Context, op Op, err error) audit.Event {
	e, _ := toError(err)
	ev := s.event(ctx, op)
	ev.Outcome = string(e.Code)
	var subj *subjectError
	if errors.As(err, &subj) {
		ev.TokenID = subj.tokenID
		if subj.keyID != "" {
			ev.KeyID = subj.keyID
		}
	}
	switch {
	case e.Code == api.ErrorErrorRateLimited:
		ev.Event, ev.Limit, ev.RetryAfter = audit.Block, e.limit, e.retryAfter
	case reuse(op, e.Code):
		ev.Event, ev.SuspectedTheft = audit.Reuse, true
		s.trailMetrics.reused(e.Code)
	}
	return ev
}

// audited records the refusals of an operation's inner middleware and
// handler (successes are the handler's to record): the minting limit, the
// body checks, parameter binding, and every error a handler returns.
func (s *Server) audited(op Op) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			err := next(c)
			if err == nil {
				return nil
			}
			return s.refused(c.Request().Context(), op, err)
		}
	}
}

// KeysChanged's events: the reload, then a revocation per removed key.
func (s *Server) keyReloadEvent(gen uint64, added, removed []string) audit.Event {
	return audit.Event{Time: s.cfg.Now(), Event: audit.KeyReload, Outcome: audit.OK, Generation: gen, Added: added, Removed: removed}
}

// Close writes the audit events still queued, waiting at most until ctx
// ends. Call it once the HTTP server has finished its requests.
func (s *Server) Close(ctx context.Context) error { return s.trail.Close(ctx) }

// trailMetrics count what the audit trail flags, whether or not the trail
// is on. A nil *trailMetrics counts nothing.
type trailMetrics struct {
	reuse    *prometheus.CounterVec
	blocks   prometheus.Counter
	failures prometheus.Counter
}

func newTrailMetrics(reg prometheus.Registerer) (*trailMetrics, error) {
	m := &trailMetrics{
		reuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokensvc_reuse_total",
			Help: "Tokens presented (verify, batch per token, /auth, refresh) after they were used up or revoked, by reason (token_used, token_revoked): suspected theft. Each is an audit event \"reuse\" and an entry of the token's history.",
		}, []string{"reason"}),
		blocks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokensvc_guard_blocks_total",
			Help: "Requests refused with 429 by the brute-force guard (a client past TOKENSVC_VERIFY_FAILURE_RATE).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokensvc_audit_write_failures_total",
			Help: "Audit events that could not be recorded (the sink failed, or its queue was full). With TOKENSVC_AUDIT_REQUIRED=true their requests were answered 503.",
		}),
	}
	for _, c := range []prometheus.Collector{m.reuse, m.blocks, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Both reasons exist from the start, so that rate() sees the first one.
	m.reuse.WithLabelValues(string(api.ErrorErrorTokenUsed))
	m.reuse.WithLabelValues(string(api.ErrorErrorTokenRevoked))
	return m, nil
}

func (m *trailMetrics) reused(code api.ErrorError) {
	if m != nil {
		m.reuse.WithLabelValues(string(code)).Inc()
	}
}

func (m *trailMetrics) blocked() {
	if m != nil {
		m.blocks.Inc()
	}
}

func (m *trailMetrics) failed(n int) {
	if m != nil {
		m.failures.Add(float64(n))
	}
}

// newTrail is the recorder of cfg's audit sink, nil when there is none.
func newTrail(cfg Config, m *trailMetrics) (*audit.Recorder, error) {
	if cfg.Audit == nil {
		return nil, nil
	}
	return audit.New(cfg.Audit, audit.Options{Required: cfg.AuditRequired, Failed: m.failed, Logger: cfg.Logger, Timeout: cfg.StoreTimeout})
}
