package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tokensvc/tokensvc/api"
)

// forwardAuth serves gateways: nginx auth_request, Traefik ForwardAuth and
// Envoy ext_authz, on /auth and any /auth/... path, with any method. It
// answers 200 with X-Token-* headers, 401 without a token, 403 for a token
// that does not verify (503 on a store outage: gateways deny on it too).
func (s *Server) forwardAuth(c echo.Context) error {
	r := c.Request()
	ri := info(r.Context())
	token := forwardedToken(r, ri.token, s.cfg.ForwardCookie)
	if token == "" {
		return newError(api.ErrorErrorMissingToken, "no token: send x-api-token, Authorization: Bearer, the forward cookie, or token= in X-Original-URI / X-Forwarded-Uri")
	}
	rec, err := s.use(r.Context(), ri, token)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	if len(s.cfg.ForwardFields) > 0 {
		setFieldHeaders(h, mergeBundle(rec.Bundle, rec.Private), s.cfg.ForwardFields)
	}
	return c.NoContent(http.StatusOK)
}

// forwardedToken finds the token where gateways put it: the usual headers,
// a cookie, or the token query parameter of the original request's URI.
func forwardedToken(r *http.Request, fromHeaders, cookie string) string {
	if fromHeaders != "" {
		return fromHeaders
	}
	if cookie != "" {
		if ck, err := r.Cookie(cookie); err == nil && ck.Value != "" {
			return ck.Value
		}
	}
	for _, h := range []string{"X-Original-URI", "X-Forwarded-Uri"} {
		if raw := r.Header.Get(h); raw != "" {
			if u, err := url.Parse(raw); err == nil {
				if t := u.Query().Get("token"); t != "" {
					return t
				}
			}
		}
	}
	return ""
}

// setFieldHeaders sends each listed bundle field as X-Token-<Field>: strings
// as they are, other JSON values as their JSON text. Control characters
// are dropped, so a value can never split a header.
func setFieldHeaders(h http.Header, bundle json.RawMessage, fields []string) {
	var values map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(bundle))
	dec.UseNumber()
	if dec.Decode(&values) != nil {
		return
	}
	for _, f := range fields {
		raw, ok := values[f]
		if !ok {
			continue
		}
		v := string(raw)
		var str string
		if json.Unmarshal(raw, &str) == nil {
			v = str
		}
		h.Set(fieldHeader(f), strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, v))
	}
}

// fieldHeader names the header of a bundle field: userId -> X-Token-Userid.
// Characters a header name cannot hold become '-'.
func fieldHeader(field string) string {
	name := strings.Map(func(r rune) rune {
		if r < 128 && (r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '-'
	}, field)
	return http.CanonicalHeaderKey("X-Token-" + name)
}
