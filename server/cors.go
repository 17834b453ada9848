package server

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
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
