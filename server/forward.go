package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokensvc/tokensvc/store"
)

// forwardAuth serves gateways: nginx auth_request, Traefik ForwardAuth and
// Envoy ext_authz, on /auth and any /auth/... path, with any method. It
// answers 200 with X-Token-* headers, 401 without a token, 403 for a token
// that does not verify (503 on a store outage: gateways deny on it too).
// Private fields go out as headers only to the gateway (X-Gateway-Secret);
// the browser's Origin, which gateways pass on, is not the caller's.
func (s *Server) forwardAuth(c echo.Context) error {
	r := c.Request()
	ri := info(r.Context())
	candidates := forwardedTokens(r, ri.token, s.cfg.ForwardCookie)
	if len(candidates) == 0 { // authorize refuses this already
		return errMissingToken
	}
	// An app may send a header of its own (another Bearer scheme, say)
	// next to the session token: the first well-formed token wins.
	token := candidates[0]
	for _, t := range candidates {
		if _, _, ok := parseToken(t); ok {
			token = t
			break
		}
	}
	rec, err := s.use(r.Context(), OpForward, ri.caller, token)
	if err != nil {
		return err
	}
	s.metrics.tokenVerified(ri.route)
	h := c.Response().Header()
	if secs := s.forwardCacheSeconds(rec); secs > 0 {
		n := strconv.FormatInt(secs, 10)
		h["Cache-Control"] = []string{"private, max-age=" + n}
		h["X-Accel-Expires"] = []string{n}
	} else {
		h["Cache-Control"] = noStore
	}
	if len(s.cfg.ForwardFields) > 0 {
		fields := rec.Bundle
		if s.access.may(OpForwardPrivate, ri.caller, &rec) {
			fields = mergeBundle(rec.Bundle, rec.Private)
		}
		setFieldHeaders(h, fields, s.cfg.ForwardFields)
	}
	return c.NoContent(http.StatusOK)
}

// forwardCacheSeconds is how long a gateway may keep /auth's 200 for rec,
// in whole seconds: Config.ForwardCacheTTL, cut to the time the token has
// left; 0 (no-store) when the setting is off, for a token whose every use
// must reach the store (a use limit counts it, an idle expiry slides on
// it), or for one with less than a second left.
func (s *Server) forwardCacheSeconds(rec store.Record) int64 {
	if s.cfg.ForwardCacheTTL <= 0 || rec.MaxUses > 0 || rec.IdleTTL > 0 {
		return 0
	}
	return int64(min(s.cfg.ForwardCacheTTL, rec.ExpiresAt.Sub(s.cfg.Now())) / time.Second)
}

// gatewayHeader carries the gateway's proof, Config.ForwardSecret. It is
// read here only, never logged and never answered.
const gatewayHeader = "X-Gateway-Secret"

// forwardedTokens lists the tokens a gateway may have sent, in order: the
// usual headers, the cookie, the token query parameter of the original
// URI (nginx, Traefik), and of this request's own URI (Envoy sends the
// original path and query under /auth).
func forwardedTokens(r *http.Request, fromHeaders, cookie string) []string {
	var out []string
	add := func(t string) {
		if t != "" {
			out = append(out, t)
		}
	}
	add(fromHeaders)
	if cookie != "" {
		if ck, err := r.Cookie(cookie); err == nil {
			add(ck.Value)
		}
	}
	for _, h := range []string{"X-Original-URI", "X-Forwarded-Uri"} {
		add(queryToken(r.Header.Get(h)))
	}
	add(queryToken(r.URL.RequestURI()))
	return out
}

// queryToken reads token= from the query of a request URI, tolerating a
// path that does not parse.
func queryToken(uri string) string {
	_, query, ok := strings.Cut(uri, "?")
	if !ok {
		return ""
	}
	q, _ := url.ParseQuery(query) // keeps what parses
	return q.Get("token")
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
