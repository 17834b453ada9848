package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

// Error is a failure the client can act on: a stable code from openapi.yaml
// and a message for people. Its status comes from statusOf, nowhere else.
type Error struct {
	Code    api.ErrorError
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func newError(code api.ErrorError, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[api.ErrorError]int{
	api.ErrorErrorBadRequest:             http.StatusBadRequest,
	api.ErrorErrorInvalidBody:            http.StatusBadRequest,
	api.ErrorErrorInvalidTtl:             http.StatusBadRequest,
	api.ErrorErrorInvalidApiKey:          http.StatusForbidden,
	api.ErrorErrorInvalidToken:           http.StatusForbidden,
	api.ErrorErrorTokenUsed:              http.StatusForbidden,
	api.ErrorErrorTokenRevoked:           http.StatusForbidden,
	api.ErrorErrorOriginNotAllowed:       http.StatusForbidden,
	api.ErrorErrorSessionExpired:         http.StatusForbidden,
	api.ErrorErrorMissingToken:           http.StatusUnauthorized,
	api.ErrorErrorUnauthorized:           http.StatusUnauthorized,
	api.ErrorErrorIdempotencyConflict:    http.StatusConflict,
	api.ErrorErrorIdempotencyUnavailable: http.StatusBadRequest,
	api.ErrorErrorRateLimited:            http.StatusTooManyRequests,
	api.ErrorErrorReloadFailed:           http.StatusBadGateway,
	api.ErrorErrorHeadersTooLarge:        http.StatusRequestHeaderFieldsTooLarge,
	api.ErrorErrorNotFound:               http.StatusNotFound,
	api.ErrorErrorMethodNotAllowed:       http.StatusMethodNotAllowed,
	api.ErrorErrorBodyTooLarge:           http.StatusRequestEntityTooLarge,
	api.ErrorErrorUnsupportedMediaType:   http.StatusUnsupportedMediaType,
	api.ErrorErrorInternal:               http.StatusInternalServerError,
	api.ErrorErrorStoreUnavailable:       http.StatusServiceUnavailable,
}

var (
	errInvalidAPIKey = newError(api.ErrorErrorInvalidApiKey, "missing or unknown x-api-key")
	errInvalidToken  = newError(api.ErrorErrorInvalidToken, "the token is missing, malformed, unknown or expired")
	errTokenUsed     = newError(api.ErrorErrorTokenUsed, "the token has had all the uses it was minted for")
	errTokenRevoked  = newError(api.ErrorErrorTokenRevoked, "the token was revoked")
	errOrigin        = newError(api.ErrorErrorOriginNotAllowed, "this origin may not use tokens of this partner")
	errNoSuchToken   = newError(api.ErrorErrorNotFound, "no such token")
	errUnavailable   = newError(api.ErrorErrorStoreUnavailable, "the token store is unavailable, try again later")
	errInternal      = newError(api.ErrorErrorInternal, "internal error")
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
	}
	info(c.Request().Context()).errCode = string(e.Code)
	if werr := c.JSON(statusOf[e.Code], api.Error{Error: e.Code, Message: e.Message}); werr != nil {
		s.log.DebugContext(c.Request().Context(), "write error response", "err", werr)
	}
}
