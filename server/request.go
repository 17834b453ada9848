package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokensvc/tokensvc/api"
)

// requestInfo travels in the request context from the middleware to the
// handlers and back to the access log. Secrets in it are never logged.
type requestInfo struct {
	id      string
	route   string // the route pattern, "unmatched" if none
	token   string // the session token as presented in headers: secret
	caller  caller // who the request speaks for, set by authorize
	client  string // the client as the brute-force guard names it, set by the guard
	addr    string // the client's address, for the audit trail (set only when it is on)
	tokenID string // names the token in the log instead of the token
	errCode string
	// idHeader is the X-Request-Id answer header's value, allocated with
	// the info.
	idHeader [1]string
}

type infoKey struct{}

// info returns the request's info; a blank one outside a request.
func info(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

func requestID(c echo.Context) string { return info(c.Request().Context()).id }

// presentedToken reads the session token from x-api-token, or else from
// Authorization: Bearer. (Header names are written canonical here and
// below: Get would allocate the canonical form of any other spelling.)
func presentedToken(h http.Header) string {
	if t := h.Get("X-Api-Token"); t != "" {
		return t
	}
	if auth := h.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	return ""
}

// newRequestID keeps a caller's X-Request-Id when it is short and plain, so
// ids can be followed across services, and makes one up otherwise.
func newRequestID(given string) string {
	if n := len(given); n > 0 && n <= 64 && strings.Trim(given, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") == "" {
		return given
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxHeaderBytes caps a request's request line and headers. The HTTP
// server's own limit is set higher, so that this one answers with the JSON
// error.
const maxHeaderBytes = 32 << 10

// headerBytes is the size of r's request line and headers.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// securityHeaders go on every answer, under their canonical names.
var securityHeaders = []struct {
	name  string
	value []string
}{
	{"X-Content-Type-Options", []string{"nosniff"}},
	{"X-Frame-Options", []string{"DENY"}},
	{"Referrer-Policy", []string{"no-referrer"}},
	{"Content-Security-Policy", []string{"default-src 'none'; frame-ancestors 'none'"}},
	{"Cache-Control", noStore},
}

// observe gives each request its info and id, sets the headers every
// response carries, and writes one access-log line per request.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		r := c.Request()
		ri := &requestInfo{
			id:    newRequestID(r.Header.Get("X-Request-Id")),
			route: routeOf(c),
			token: presentedToken(r.Header),
		}
		if s.trail.On() {
			ri.addr = c.RealIP()
		}
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), infoKey{}, ri)))
		h := c.Response().Header()
		ri.idHeader[0] = ri.id
		h["X-Request-Id"] = ri.idHeader[:]
		// Security headers on every answer; a handler may loosen them (the
		// docs page sets its own CSP and caching). The values are shared,
		// never changed in place: Set replaces the slice.
		for _, sh := range securityHeaders {
			h[sh.name] = sh.value
		}
		var err error
		if headerBytes(r) > maxHeaderBytes {
			err = newError(api.ErrorErrorHeadersTooLarge, "the request line and headers are larger than %d bytes", maxHeaderBytes)
		} else {
			err = next(c)
		}
		if err != nil {
			c.Error(err) // writes the response now, so the log sees its status
		}
		route := ri.route
		if ri.errCode != "" {
			s.metrics.finished(ri.errCode)
		}
		level := slog.LevelInfo
		if route == "/healthz" || route == "/readyz" || route == MetricsPath {
			level = slog.LevelDebug
		}
		ctx := r.Context()
		if !s.log.Enabled(ctx, level) {
			return nil
		}
		var buf [9]slog.Attr // on the stack: AddAttrs copies them
		attrs := append(buf[:0],
			slog.String("request_id", ri.id),
			slog.String("method", methodLabel(r.Method)),
			slog.String("route", route),
			slog.Int("status", c.Response().Status),
			slog.Int64("bytes", c.Response().Size),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		)
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
		for _, kv := range [...][2]string{{"key_id", ri.caller.key.ID}, {"token_id", ri.tokenID}, {"error", ri.errCode}} {
			if kv[1] != "" {
				attrs = append(attrs, slog.String(kv[0], kv[1]))
			}
		}
		// Handed to the handler as Logger.LogAttrs would, but without the
		// caller's program counter, which no handler of ours reads and
		// which costs a stack walk per request.
		rec := slog.NewRecord(time.Now(), level, "request", 0)
		rec.AddAttrs(attrs...)
		_ = s.log.Handler().Handle(ctx, rec) // as LogAttrs: a failed log write fails no request
		return nil
	}
}

// authorize identifies the caller of op from the request's credentials and
// applies op's access table cells that need no token record; handlers
// apply the rest with s.access.decide once they have the record.
func (s *Server) authorize(op Op) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			ri := info(r.Context())
			h := r.Header
			for _, name := range credentialHeaders {
				if len(h[name]) > 1 {
					return s.refused(r.Context(), op, newError(api.ErrorErrorBadRequest, "%s was sent more than once", name))
				}
			}
			cr := credentials{apiKey: h.Get("X-Api-Key"), origin: h.Get("Origin"), hasToken: ri.token != "", admin: h.Get("X-Admin-Token")}
			if op == OpBatch {
				cr.hasToken = true // in the body, checked one by one
			}
			if op == OpForward {
				cr.hasToken = len(forwardedTokens(r, ri.token, s.cfg.ForwardCookie)) > 0
				cr.gateway, cr.hasGateway = gatewayProof(h)
			}
			cl, err := s.access.identify(op, cr)
			if err == nil {
				ri.caller = cl // identified, if not allowed: the refusal names the key
				err = s.access.decide(op, cl, nil)
			}
			if err != nil {
				return s.refused(r.Context(), op, err)
			}
			return next(c)
		}
	}
}

// credentialHeaders may each be sent once: a proxy that appends a second
// value must not decide which one counts.
var credentialHeaders = []string{"X-Api-Key", "X-Api-Token", "Authorization", "Origin", "X-Admin-Token"}

// gatewayProof is the X-Gateway-Secret header, and whether it was sent.
func gatewayProof(h http.Header) (string, bool) {
	v, ok := h[gatewayHeader]
	if !ok {
		return "", false
	}
	return strings.Join(v, ","), true // sent twice is not the secret

}

// recoverPanic turns a handler panic into a logged 500.
func (s *Server) recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return next(c)
	}
}
