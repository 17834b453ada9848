package server

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/server/ratelimit"
)

// limitMinting applies the partner key's minting rate (or the default).
func (s *Server) limitMinting(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ri := info(c.Request().Context())
		limit := ri.caller.key.RateLimit
		if limit.Zero() {
			limit = s.cfg.GenerateRate
		}
		if s.cfg.Limiter == nil || limit.Zero() {
			return next(c)
		}
		d, err := s.cfg.Limiter.AllowN(c.Request().Context(), "gen:"+ri.caller.key.ID, limit, 1)
		if err != nil {
			return errUnavailable
		}
		if !d.Allowed {
			return tooManyError(audit.LimitMinting, d.RetryAfter)
		}
		return next(c)
	}
}

// guard is the brute-force guard: failed checks (see failedCheck: wrong
// tokens, partner keys, admin tokens, gateway secrets) count against the
// client, in the shared limiter; past the limit the client gets 429, even
// with good credentials, until the limit allows again. A client is an
// IPv4 address, or an IPv6 /64 (what one subscriber is usually given).
//
// A client with no failed check lately costs nothing: its checks run and
// only a failure is counted. A client that failed within the limit's
// period is a suspect: each of its checks first takes one from its
// allowance and gives it back if it passes, so that however many requests
// it sends at once, no more checks are answered than the limit allows. A
// first burst from a new client can pass the limit by as many requests as
// it has in flight before its first failure is counted.
//
// Refused clients and suspects are remembered here, a bounded number of
// each: a refused client costs no round trip; when there is no room for a
// suspect, every client is treated as one (slower, never weaker).
type guard struct {
	limiter Limiter // nil: off
	limit   ratelimit.Limit
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	blocked  map[string]time.Time // client -> refused until
	suspects map[string]time.Time // client -> suspect until
	crowded  bool                 // suspects is full: everyone is one
}

// maxBlocked bounds the clients remembered as refused, and the suspects.
// Past it, expired ones are dropped first; a refused client that finds no
// room is still refused by the shared limiter, at the cost of a round trip.
const maxBlocked = 10_000

func (g *guard) on() bool { return g.limiter != nil && !g.limit.Zero() }

// client names the client of an address for the guard: the address for
// IPv4, its /64 for IPv6.
func client(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// refusedFor says how long a remembered client is still refused.
func (g *guard) refusedFor(cl string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.blocked[cl]
	if !ok {
		return 0
	}
	wait := until.Sub(g.now())
	if wait <= 0 {
		delete(g.blocked, cl)
	}
	return wait
}

// block remembers a refused client; it reports false when the client was
// already remembered (so the refusal is logged once per burst).
func (g *guard) block(cl string, until time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.blocked[cl]; ok {
		g.blocked[cl] = until
		return false
	}
	if len(g.blocked) >= maxBlocked {
		now := g.now()
		for k, t := range g.blocked {
			if !t.After(now) {
				delete(g.blocked, k)
			}
		}
		if len(g.blocked) >= maxBlocked {
			return true
		}
	}
	g.blocked[cl] = until
	return true
}

// suspect says whether cl failed a check lately.
func (g *guard) suspect(cl string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.crowded {
		return true
	}
	until, ok := g.suspects[cl]
	if ok && !until.After(g.now()) {
		delete(g.suspects, cl)
		return false
	}
	return ok
}

// suspected remembers that cl failed a check now.
func (g *guard) suspected(cl string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if _, ok := g.suspects[cl]; !ok && len(g.suspects) >= maxBlocked {
		for k, t := range g.suspects {
			if !t.After(now) {
				delete(g.suspects, k)
			}
		}
		if g.crowded = len(g.suspects) >= maxBlocked; g.crowded {
			return
		}
	}
	g.suspects[cl] = now.Add(g.limit.Per)
}

// take counts n failed checks of cl (a negative n gives -n back). It
// returns the wait before cl may try again, 0 when allowed. A limiter
// outage lets the checks through, logged: the guard is no reason to stop
// serving.
func (g *guard) take(ctx context.Context, cl string, n int) time.Duration {
	d, err := g.limiter.AllowN(ctx, "fail:"+cl, g.limit, n)
	if err != nil {
		g.log.WarnContext(ctx, "rate limiter unavailable; failed checks not counted", "err", err)
		return 0
	}
	if d.Allowed || n <= 0 {
		return 0
	}
	if g.block(cl, g.now().Add(d.RetryAfter)) {
		g.log.WarnContext(ctx, "client refused after too many failed checks", "request_id", info(ctx).id, "retry_after", d.RetryAfter.String())
	}
	return d.RetryAfter
}

// guardFailures runs the guard around an operation op: a refused client
// is answered 429 at once; a failed check the handler returns is counted.
// Handlers that check many credentials at once (/verify/batch) count them
// themselves, with chargeChecks.
func (s *Server) guardFailures(op Op) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			g := s.guard
			if !g.on() {
				return next(c)
			}
			ctx := c.Request().Context()
			ri := info(ctx)
			ri.client = client(c.RealIP())
			if wait := g.refusedFor(ri.client); wait > 0 {
				return s.guardBlock(ctx, op, wait)
			}
			if g.suspect(ri.client) {
				if wait := g.take(ctx, ri.client, 1); wait > 0 {
					return s.guardBlock(ctx, op, wait)
				}
				err := next(c)
				if e, ok := toError(err); err != nil && ok && failedCheck(e.Code) {
					g.suspected(ri.client)
					return err // the check taken first counts it
				}
				g.take(ctx, ri.client, -1)
				return err
			}
			err := next(c)
			if err == nil {
				return nil // the common case costs nothing more
			}
			if e, ok := toError(err); ok && failedCheck(e.Code) {
				g.suspected(ri.client)
				if wait := g.take(ctx, ri.client, 1); wait > 0 {
					return s.guardBlock(ctx, op, wait)
				}
			}
			return err
		}
	}
}

// guardBlock is the guard's 429 to a request of op: counted in
// tokensvc_guard_blocks_total and recorded as a block.
func (s *Server) guardBlock(ctx context.Context, op Op, wait time.Duration) error {
	s.trailMetrics.blocked()
	return s.refused(ctx, op, tooManyError(audit.LimitFailures, wait))
}

// chargeChecks counts n failed checks of one request (a batch's) against
// the client's allowance, before the request is answered: 429 when the
// allowance cannot take them all (nothing is counted then, and the caller
// answers nothing else). The limiter takes the n at once, atomically, so
// concurrent batches cannot together reveal more failures than it allows.
func (s *Server) chargeChecks(ctx context.Context, n int) error {
	ri := info(ctx)
	if !s.guard.on() || n <= 0 || ri.client == "" {
		return nil
	}
	s.guard.suspected(ri.client)
	if wait := s.guard.take(ctx, ri.client, n); wait > 0 {
		return s.guardBlock(ctx, OpBatch, wait)
	}
	return nil
}

// tooManyError is the 429 answer of a limit; handleError sends
// Retry-After, in whole seconds, with it.
func tooManyError(limit string, wait time.Duration) *Error {
	secs := int64((wait + time.Second - 1) / time.Second)
	e := newError(api.ErrorErrorRateLimited, "too many requests, retry in %d seconds", secs)
	e.retryAfter, e.limit = secs, limit
	return e
}
