package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/keys"
)

// cors answers browsers' preflights and marks responses for the origins
// some partner key allows. It echoes the origin (never "*") and never
// allows credentials: tokens travel in headers, not cookies. The admin API
// forward auth and /metrics are not for browsers.
func (s *Server) cors() echo.MiddlewareFunc {
	return middleware.CORSWithConfig(middleware.CORSConfig{
		Skipper: func(c echo.Context) bool {
			p := c.Request().URL.Path
			return strings.HasPrefix(p, "/admin/") || p == "/auth" || strings.HasPrefix(p, "/auth/") || p == "/metrics"
		},
		AllowOriginFunc: func(origin string) (bool, error) { return s.cfg.Partners.AnyOriginAllowed(origin), nil },
		AllowMethods:    []string{http.MethodGet, http.MethodPost, http.MethodDelete},
		AllowHeaders:    []string{"x-api-token", "x-api-key", "authorization", "content-type", "idempotency-key", "x-request-id"},
		ExposeHeaders:   []string{"X-Request-Id", "Retry-After"},
		MaxAge:          600,
	})
}

// authenticatePartner admits callers with a valid partner key.
func (s *Server) authenticatePartner(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ri := info(c.Request().Context())
		key, err := s.cfg.Partners.Authenticate(ri.apiKey, ri.origin)
		switch {
		case errors.Is(err, keys.ErrOriginNotAllowed):
			return newError(api.ErrorErrorOriginNotAllowed, "this key's client secret may not be used from this origin")
		case err != nil:
			return errInvalidAPIKey
		}
		ri.key = key
		return next(c)
	}
}

// partnerIfPresented authenticates an optional x-api-key (on /verify, it
// unlocks the private fields of the key's own tokens). A wrong key is an
// error, not a silent downgrade.
func (s *Server) partnerIfPresented(ri *requestInfo) (*keys.Key, error) {
	if ri.apiKey == "" {
		return nil, nil
	}
	key, err := s.cfg.Partners.Authenticate(ri.apiKey, ri.origin)
	if err != nil {
		return nil, errInvalidAPIKey
	}
	ri.key = key
	return &key, nil
}

// adminOnly guards the admin API: 404 while no admin token is configured,
// 401 for a missing or wrong X-Admin-Token. Hashing both sides first makes
// the comparison constant-time whatever the lengths.
func (s *Server) adminOnly(next echo.HandlerFunc) echo.HandlerFunc {
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	return func(c echo.Context) error {
		if s.cfg.AdminToken == "" {
			return newError(api.ErrorErrorNotFound, "the admin API is off: set TOKENSVC_ADMIN_TOKEN")
		}
		got := sha256.Sum256([]byte(c.Request().Header.Get("X-Admin-Token")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return newError(api.ErrorErrorUnauthorized, "missing or wrong X-Admin-Token")
		}
		return next(c)
	}
}
