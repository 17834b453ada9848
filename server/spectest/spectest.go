// Package spectest checks HTTP responses against openapi.yaml, so tests fail
// when the code and the contract drift apart. It is for tests only.
package spectest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/tokensvc/tokensvc/api"
)

// Validator checks responses against the embedded spec.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
}

// New loads and validates the spec.
func New(tb testing.TB) *Validator {
	tb.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.Spec)
	if err != nil {
		tb.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		tb.Fatalf("openapi.yaml is not valid: %v", err)
	}
	doc.Servers = nil // match requests to any host, such as a test server's
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatal(err)
	}
	return &Validator{doc: doc, router: router}
}

// Check fails tb unless the response (status, header, body) to req is one
// the spec allows. Responses to routes the spec does not have must still be
// the spec's Error object.
func (v *Validator) Check(tb testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	tb.Helper()
	if strings.HasPrefix(req.URL.Path, "/auth/") {
		// Forward auth serves every /auth/... path and method as GET /auth
		// (see openapi.yaml); judge it by that operation.
		req = req.Clone(req.Context())
		req.Method, req.URL.Path = http.MethodGet, "/auth"
	}
	if req.URL.Path == "/metrics" && status < 400 {
		// Prometheus metrics are served beside the API, outside the
		// contract (see README); their failures are still Error objects.
		return
	}
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		v.checkError(tb, req, status, body)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: status,
		Header: header,
		Body:   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		tb.Errorf("%s %s -> %d breaks openapi.yaml: %v\nbody: %s", req.Method, req.URL.Path, status, err, body)
	}
}

func (v *Validator) checkError(tb testing.TB, req *http.Request, status int, body []byte) {
	tb.Helper()
	if req.Method == http.MethodOptions && status == http.StatusNoContent && len(body) == 0 {
		return // a CORS preflight, answered by the CORS middleware
	}
	if status < 400 {
		tb.Errorf("%s %s -> %d: a route the spec does not have answered success", req.Method, req.URL.Path, status)
		return
	}
	schema := v.doc.Components.Schemas["Error"].Value
	var val any
	if err := decodeJSON(body, &val); err != nil {
		tb.Errorf("%s %s -> %d: error body is not JSON: %s", req.Method, req.URL.Path, status, body)
		return
	}
	if err := schema.VisitJSON(val); err != nil {
		tb.Errorf("%s %s -> %d: error body breaks the Error schema: %v\nbody: %s", req.Method, req.URL.Path, status, err, body)
	}
}

// Transport returns a RoundTripper that checks every response it carries.
func (v *Validator) Transport(tb testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		v.Check(tb, req, resp.StatusCode, resp.Header, body)
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}
