package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

// Error is a failure the client can act on: a stable code from openapi.yaml
// and a message for people. Its status comes from statusOf, nowhere else.
type Error struct {
	Code    api.ErrorError
	Message string
	// retryAfter, in seconds, is sent as Retry-After when above 0.
	retryAfter int64
	// limit names the limit of a rate_limited answer, for the audit trail
	// (audit.LimitFailures, audit.LimitMinting).
	limit string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func newError(code api.ErrorError, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// codes is the one table of error codes: the HTTP status of each, and
// whether it is a failed check, the answer a guesser collects when a
// presented credential (a token, a partner key, the admin token, the
// gateway secret) does not check out. Failed checks count against the
// brute-force guard (limits.go) and in tokensvc_checks_failed_total
// (metrics.go); nothing else decides either.
var codes = map[api.ErrorError]struct {
	status      int
	failedCheck bool
}{
	api.ErrorErrorBadRequest:             {http.StatusBadRequest, false},
	api.ErrorErrorInvalidBody:            {http.StatusBadRequest, false},
	api.ErrorErrorInvalidTtl:             {http.StatusBadRequest, false},
	api.ErrorErrorInvalidApiKey:          {http.StatusForbidden, true},
	api.ErrorErrorServerSecretRequired:   {http.StatusForbidden, false},
	api.ErrorErrorInvalidToken:           {http.StatusForbidden, true},
	api.ErrorErrorTokenUsed:              {http.StatusForbidden, true},
	api.ErrorErrorTokenRevoked:           {http.StatusForbidden, true},
	api.ErrorErrorOriginNotAllowed:       {http.StatusForbidden, true},
	api.ErrorErrorSessionExpired:         {http.StatusForbidden, false},
	api.ErrorErrorMissingToken:           {http.StatusUnauthorized, false},
	api.ErrorErrorUnauthorized:           {http.StatusUnauthorized, true},
	api.ErrorErrorIdempotencyConflict:    {http.StatusConflict, false},
	api.ErrorErrorIdempotencyUnavailable: {http.StatusBadRequest, false},
	api.ErrorErrorRateLimited:            {http.StatusTooManyRequests, false},
	api.ErrorErrorReloadFailed:           {http.StatusBadGateway, false},
	api.ErrorErrorHeadersTooLarge:        {http.StatusRequestHeaderFieldsTooLarge, false},
	api.ErrorErrorNotFound:               {http.StatusNotFound, false},
	api.ErrorErrorMethodNotAllowed:       {http.StatusMethodNotAllowed, false},
	api.ErrorErrorBodyTooLarge:           {http.StatusRequestEntityTooLarge, false},
	api.ErrorErrorUnsupportedMediaType:   {http.StatusUnsupportedMediaType, false},
	api.ErrorErrorInternal:               {http.StatusInternalServerError, false},
	api.ErrorErrorStoreUnavailable:       {http.StatusServiceUnavailable, false},
	api.ErrorErrorStoreFull:              {http.StatusServiceUnavailable, false},
	api.ErrorErrorAuditUnavailable:       {http.StatusServiceUnavailable, false},
}

// statusOf is the HTTP status of an error code.
func statusOf(code api.ErrorError) int { return codes[code].status }

// failedCheck says whether code answers a presented credential that did
// not check out (see codes).
func failedCheck(code api.ErrorError) bool { return codes[code].failedCheck }

var (
	errInvalidAPIKey = newError(api.ErrorErrorInvalidApiKey, "missing or unknown x-api-key")
	errInvalidToken  = newError(api.ErrorErrorInvalidToken, "the token is missing, malformed, unknown or expired")
	errTokenUsed     = newError(api.ErrorErrorTokenUsed, "the token has had all the uses it was minted for")
	errTokenRevoked  = newError(api.ErrorErrorTokenRevoked, "the token was revoked")
	errOrigin        = newError(api.ErrorErrorOriginNotAllowed, "this origin may not use tokens of this partner")
	errNoSuchToken   = newError(api.ErrorErrorNotFound, "no such token")
	errMissingToken  = newError(api.ErrorErrorMissingToken, "no token: send x-api-token, Authorization: Bearer, the forward cookie, or token= in the URI")
	errUnavailable   = newError(api.ErrorErrorStoreUnavailable, "the token store is unavailable, try again later")
	errFull          = newError(api.ErrorErrorStoreFull, "the token store is full and refuses writes, try again later")
	errInternal      = newError(api.ErrorErrorInternal, "internal error")
	errAuditDown     = newError(api.ErrorErrorAuditUnavailable, "the audit trail could not record this request, try again later")
)

// echoCodes names the errors Echo itself raises (routing, parameter binding).
var echoCodes = map[int]api.ErrorError{
	http.StatusBadRequest:            api.ErrorErrorBadRequest,
	http.StatusNotFound:              api.ErrorErrorNotFound,
	http.StatusMethodNotAllowed:      api.ErrorErrorMethodNotAllowed,
	http.StatusRequestEntityTooLarge: api.ErrorErrorBodyTooLarge,
	http.StatusUnsupportedMediaType:  api.ErrorErrorUnsupportedMediaType,
}

// toError turns any error into the client-facing one. The second result is
// false for unexpected errors, which are logged in full and never shown.
func toError(err error) (*Error, bool) {
	var e *Error
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &e):
		return e, true
	case errors.As(err, &mbe):
		return newError(api.ErrorErrorBodyTooLarge, "request body is larger than %d bytes", mbe.Limit), true
	case errors.Is(err, store.ErrFull):
		return errFull, true
	case errors.Is(err, store.ErrUnavailable):
		return errUnavailable, true
	case errors.Is(err, store.ErrNotFound):
		return errInvalidToken, true
	case errors.Is(err, store.ErrUsed):
		return errTokenUsed, true
	case errors.Is(err, store.ErrRevoked):
		return errTokenRevoked, true
	case errors.As(err, &he):
		code, ok := echoCodes[he.Code]
		if !ok {
			return errInternal, false
		}
		msg, _ := he.Message.(string)
		if msg == "" {
			msg = http.StatusText(he.Code)
		}
		return &Error{Code: code, Message: msg}, true
	}
	return errInternal, false
}

// handleError is Echo's error handler: every error response is written here.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e, expected := toError(err)
	switch {
	case !expected:
		s.log.ErrorContext(c.Request().Context(), "unexpected error", "err", err, "request_id", requestID(c))
	case e.Code == api.ErrorErrorStoreUnavailable:
		s.log.WarnContext(c.Request().Context(), "store unavailable", "err", err, "request_id", requestID(c))
	case e.Code == api.ErrorErrorStoreFull && s.fullBurst.starts(time.Now()):
		s.log.ErrorContext(c.Request().Context(), "store full", "err", err, "request_id", requestID(c),
			"hint", "Redis reached maxmemory and refuses writes: minting fails until memory is freed or raised; verifying plain tokens goes on")
	}
	info(c.Request().Context()).errCode = string(e.Code)
	if e.Code == api.ErrorErrorMissingToken {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="tokensvc"`)
	}
	if e.retryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.FormatInt(e.retryAfter, 10))
	}
	if werr := c.JSON(statusOf(e.Code), api.Error{Error: e.Code, Message: e.Message}); werr != nil {
		s.log.DebugContext(c.Request().Context(), "write error response", "err", werr)
	}
}

// burst tells the first of a run of events from the rest: an event starts
// a burst when none came in the last burstGap.
type burst struct {
	mu   sync.Mutex
	last time.Time
}

const burstGap = time.Minute

func (b *burst) starts(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	first := now.Sub(b.last) > burstGap
	b.last = now
	return first
}
