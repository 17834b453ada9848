package server

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokensvc/tokensvc/api"
)

// limitMinting applies the partner key's minting rate (or the default).
func (s *Server) limitMinting(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ri := info(c.Request().Context())
		limit := ri.key.RateLimit
		if limit.Zero() {
			limit = s.cfg.GenerateRate
		}
		if s.cfg.Limiter == nil || limit.Zero() {
			return next(c)
		}
		d, err := s.cfg.Limiter.AllowN(c.Request().Context(), "gen:"+ri.key.ID, limit, 1)
		if err != nil {
			return errUnavailable
		}
		if !d.Allowed {
			return s.tooMany(c, d.RetryAfter)
		}
		return next(c)
	}
}

// tokenFailures are the answers that a token guesser collects.
var tokenFailures = map[api.ErrorError]bool{
	api.ErrorErrorInvalidToken:     true,
	api.ErrorErrorTokenUsed:        true,
	api.ErrorErrorTokenRevoked:     true,
	api.ErrorErrorOriginNotAllowed: true,
	api.ErrorErrorUnauthorized:     true, // a wrong X-Gateway-Secret: only /auth answers it among guarded routes
}

// guardFailures is the brute-force guard: failed token checks count
// against the client address, in the shared limiter; past the limit the
// address gets 429 until the limit allows again. Refused addresses are
// remembered here, so a refused client costs no store round trip, and
// successful checks cost nothing.
func (s *Server) guardFailures(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.Limiter == nil || s.cfg.FailureRate.Zero() {
			return next(c)
		}
		ip := c.RealIP()
		now := s.cfg.Now()
		if until, ok := s.blocked.Load(ip); ok {
			if wait := until.(time.Time).Sub(now); wait > 0 {
				return s.tooMany(c, wait)
			}
			s.blocked.Delete(ip)
		}
		err := next(c)
		ri := info(c.Request().Context())
		if err == nil && ri.failures == 0 {
			return nil // the common case costs nothing more
		}
		failures := ri.failures
		if e, ok := toError(err); err != nil && ok && tokenFailures[e.Code] {
			failures++
		}
		if failures == 0 {
			return err
		}
		d, lerr := s.cfg.Limiter.AllowN(c.Request().Context(), "fail:"+ip, s.cfg.FailureRate, failures)
		if lerr != nil {
			s.log.WarnContext(c.Request().Context(), "rate limiter unavailable; failure not counted", "err", lerr)
			return err
		}
		if !d.Allowed {
			s.blocked.Store(ip, now.Add(d.RetryAfter))
			s.log.WarnContext(c.Request().Context(), "client refused after too many failed token checks", "request_id", ri.id, "retry_after", d.RetryAfter.String())
			if err != nil {
				return s.tooMany(c, d.RetryAfter)
			}
		}
		return err
	}
}

// tooMany is the 429 answer, with Retry-After in whole seconds.
func (s *Server) tooMany(c echo.Context, wait time.Duration) error {
	secs := int64((wait + time.Second - 1) / time.Second)
	c.Response().Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	return newError(api.ErrorErrorRateLimited, "too many requests, retry in %d seconds", secs)
}
