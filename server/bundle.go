package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/tokensvc/tokensvc/api"
)

// Shape limits of a bundle, on top of the body size limit.
const (
	maxDepth       = 32   // nesting of objects and arrays
	maxMembers     = 1024 // object members, counted at every level
	maxNameBytes   = 256  // one member name
	maxStringBytes = 8192 // one string value
)

const (
	mediaJSON = "application/json"
	mediaForm = "application/x-www-form-urlencoded"
)

// readBundle reads the /generate body within the size limit and hands the
// handler a validated, compact JSON object, whatever form it came in.
func (s *Server) readBundle(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || (media != mediaJSON && media != mediaForm) {
			return newError(api.ErrorErrorUnsupportedMediaType, "Content-Type must be %s or %s", mediaJSON, mediaForm)
		}
		tooLarge := newError(api.ErrorErrorBodyTooLarge, "request body is larger than %d bytes", s.cfg.MaxBodyBytes)
		if r.ContentLength > s.cfg.MaxBodyBytes {
			return tooLarge
		}
		body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, s.cfg.MaxBodyBytes))
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return tooLarge
		case err != nil:
			return newError(api.ErrorErrorBadRequest, "could not read the request body")
		}
		bundle, err := decodeBundle(media, body)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(bundle))
		r.ContentLength = int64(len(bundle))
		r.Header.Set("Content-Type", mediaJSON)
		return next(c)
	}
}

// limitJSONBody caps a JSON body at the configured size before the
// generated code decodes it.
func (s *Server) limitJSONBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || media != mediaJSON {
			return newError(api.ErrorErrorUnsupportedMediaType, "Content-Type must be %s", mediaJSON)
		}
		if r.ContentLength > s.cfg.MaxBodyBytes {
			return newError(api.ErrorErrorBodyTooLarge, "request body is larger than %d bytes", s.cfg.MaxBodyBytes)
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, s.cfg.MaxBodyBytes)
		return next(c)
	}
}

// decodeBundle validates a body of the given media type and returns it as a
// compact JSON object. JSON values keep their exact text (numbers are not
// converted); a form's fields become strings. Errors are *Error.
func decodeBundle(media string, body []byte) (json.RawMessage, error) {
	if !utf8.Valid(body) {
		return nil, invalidBody("the body is not valid UTF-8")
	}
	if media == mediaForm {
		return formBundle(body)
	}
	out, err := compactObject(body)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func invalidBody(msg string) *Error { return &Error{Code: api.ErrorErrorInvalidBody, Message: msg} }

// formBundle turns a URL-encoded form into a JSON object of strings.
func formBundle(body []byte) (json.RawMessage, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidBody("the body is not a valid URL-encoded form")
	}
	if len(form) > maxMembers {
		return nil, invalidBody("the body has more than 1024 fields")
	}
	fields := make(map[string]string, len(form))
	for name, vals := range form {
		switch {
		case len(vals) != 1:
			return nil, invalidBody("form field " + strconvQuote(name) + " is given more than once")
		case len(name) > maxNameBytes:
			return nil, invalidBody("a field name is longer than 256 bytes")
		case len(vals[0]) > maxStringBytes:
			return nil, invalidBody("a string value is longer than 8192 bytes")
		case !utf8.ValidString(name) || !utf8.ValidString(vals[0]):
			return nil, invalidBody("the form is not valid UTF-8 once decoded")
		}
		fields[name] = vals[0]
	}
	return json.Marshal(fields) // sorted keys: the same form stores the same bytes
}

func strconvQuote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
