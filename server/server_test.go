package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

const jsonCT = "Content-Type: application/json"

func TestGenerateThenVerify(t *testing.T) {
	h := newHarness(t, nil)
	bundle := `{"auth":"apiKey","file":"/a b/c.dwg","userId":"u-1","server":"s1","n":12345678901234567890,"f":1.5e3,"nested":{"list":[1,"two",null,true]},"u":"été <b>&"}`
	res := h.do(t, "POST", "/generate", bundle, jsonCT, "x-api-key: "+partnerKey)
	if res.status != 200 {
		t.Fatalf("generate: %d %s", res.status, res.body)
	}
	body := res.json(t)
	token := body["token"].(string)
	u, err := uuid.Parse(token)
	if err != nil || u.Version() != 4 {
		t.Fatalf("token %q is not a UUID v4", token)
	}
	sum := sha256.Sum256([]byte(token))
	if got, want := body["token_id"], hex.EncodeToString(sum[:16]); got != want {
		t.Errorf("token_id = %v, want %v", got, want)
	}
	if got, want := body["expiration_time"], fmt.Sprint(h.clock.Now().Add(time.Hour).Unix()); fmt.Sprint(got) != want {
		t.Errorf("expiration_time = %v, want %v", got, want)
	}
	if got := fmt.Sprint(body["expires_in"]); got != "3600" {
		t.Errorf("expires_in = %v, want 3600", got)
	}

	for _, hdr := range []string{"x-api-token: " + token, "Authorization: Bearer " + token, "Authorization: bearer " + strings.ToUpper(token)} {
		res = h.do(t, "GET", "/verify", "", hdr)
		if res.status != 200 {
			t.Fatalf("verify with %q: %d %s", hdr, res.status, res.body)
		}
		if string(res.body) != bundle {
			t.Errorf("verify changed the bundle:\nwant %s\ngot  %s", bundle, res.body)
		}
		if cc := res.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q", cc)
		}
	}
}

// A JSON body is stored compact; values keep their text and types.
func TestGenerateCompactsJSON(t *testing.T) {
	h := newHarness(t, nil)
	token := h.generate(t, "{ \"a\" : [ 1 , 2.50 ] ,\n \"b\":{} }")
	res := h.do(t, "GET", "/verify", "", "x-api-token: "+token)
	if string(res.body) != `{"a":[1,2.50],"b":{}}` {
		t.Fatalf("bundle = %s", res.body)
	}
}

func TestGenerateForm(t *testing.T) {
	h := newHarness(t, nil)
	res := h.do(t, "POST", "/generate?ttl=120", "userId=42&file=%2Fx%20y.dwg&empty=",
		"Content-Type: application/x-www-form-urlencoded; charset=utf-8", "x-api-key: "+partnerKey)
	if res.status != 200 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	if got := fmt.Sprint(res.json(t)["expires_in"]); got != "120" {
		t.Errorf("expires_in = %s", got)
	}
	res = h.do(t, "GET", "/verify", "", "x-api-token: "+res.json(t)["token"].(string))
	if want := `{"empty":"","file":"/x y.dwg","userId":"42"}`; string(res.body) != want {
		t.Fatalf("bundle = %s, want %s", res.body, want)
	}
}

func TestGenerateErrors(t *testing.T) {
	key := "x-api-key: " + partnerKey
	deep := strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33)
	cases := []struct {
		name    string
		target  string
		body    string
		headers []string
		status  int
		code    string
	}{
		{"no key", "/generate", `{}`, []string{jsonCT}, 403, "invalid_api_key"},
		{"wrong key", "/generate", `{}`, []string{jsonCT, "x-api-key: nope"}, 403, "invalid_api_key"},
		{"key checked before body", "/generate", strings.Repeat("x", 20000), []string{jsonCT, "x-api-key: nope"}, 403, "invalid_api_key"},
		{"text body", "/generate", `{}`, []string{"Content-Type: text/plain", key}, 415, "unsupported_media_type"},
		{"no content type", "/generate", `{}`, []string{key}, 415, "unsupported_media_type"},
		{"too large", "/generate", `{"a":"` + strings.Repeat("x", 16<<10) + `"}`, []string{jsonCT, key}, 413, "body_too_large"},
		{"array", "/generate", `[1,2]`, []string{jsonCT, key}, 400, "invalid_body"},
		{"string", "/generate", `"a"`, []string{jsonCT, key}, 400, "invalid_body"},
		{"null", "/generate", `null`, []string{jsonCT, key}, 400, "invalid_body"},
		{"empty", "/generate", ``, []string{jsonCT, key}, 400, "invalid_body"},
		{"broken", "/generate", `{"a":}`, []string{jsonCT, key}, 400, "invalid_body"},
		{"trailing data", "/generate", `{"a":1}{"b":2}`, []string{jsonCT, key}, 400, "invalid_body"},
		{"too deep", "/generate", deep, []string{jsonCT, key}, 400, "invalid_body"},
		{"bad utf-8", "/generate", "{\"a\":\"\xff\"}", []string{jsonCT, key}, 400, "invalid_body"},
		{"long name", "/generate", `{"` + strings.Repeat("n", 257) + `":1}`, []string{jsonCT, key}, 400, "invalid_body"},
		{"repeated form field", "/generate", `a=1&a=2`, []string{"Content-Type: application/x-www-form-urlencoded", key}, 400, "invalid_body"},
		{"broken form", "/generate", `a=%zz`, []string{"Content-Type: application/x-www-form-urlencoded", key}, 400, "invalid_body"},
		{"ttl zero", "/generate?ttl=0", `{}`, []string{jsonCT, key}, 400, "invalid_ttl"},
		{"ttl over max", "/generate?ttl=86401", `{}`, []string{jsonCT, key}, 400, "invalid_ttl"},
		{"ttl negative", "/generate?ttl=-5", `{}`, []string{jsonCT, key}, 400, "invalid_ttl"},
		{"ttl not a number", "/generate?ttl=abc", `{}`, []string{jsonCT, key}, 400, "bad_request"},
		{"verify without token", "/verify", "", nil, 403, "invalid_token"},
		{"wrong method", "/verify", "", []string{jsonCT}, 405, "method_not_allowed"},
		{"no such route", "/nope", "", nil, 404, "not_found"},
	}
	h := newHarness(t, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if tc.target == "/verify" && tc.code != "method_not_allowed" || tc.target == "/nope" {
				method = "GET"
			}
			wantError(t, h.do(t, method, tc.target, tc.body, tc.headers...), tc.status, tc.code)
		})
	}
}

// The size limit holds for bodies without a Content-Length too.
func TestGenerateChunkedTooLarge(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBodyBytes = 64 })
	res := h.do(t, "POST", "/generate", `{"a":"`+strings.Repeat("x", 100)+`"}`, jsonCT, "x-api-key: "+partnerKey, "Transfer-Encoding: chunked")
	wantError(t, res, 413, "body_too_large")
	if !strings.Contains(string(res.body), "64 bytes") {
		t.Errorf("message does not name the limit: %s", res.body)
	}
}

func TestVerifyRejects(t *testing.T) {
	h := newHarness(t, nil)
	token := h.generate(t, `{"a":1}`)
	v1 := uuid.Must(uuid.NewUUID()).String() // a version-1 UUID
	cases := map[string]string{
		"unknown":        uuid.Must(uuid.NewRandom()).String(),
		"not a uuid":     "not-a-token",
		"uuid v1":        v1,
		"braced":         "{" + token + "}",
		"urn":            "urn:uuid:" + token,
		"too long":       token + "0",
		"empty bearer":   "",
		"token_id alone": tokenID(token).String(),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			wantError(t, h.do(t, "GET", "/verify", "", "x-api-token: "+tok), 403, "invalid_token")
		})
	}
}

func TestVerifyAfterExpiry(t *testing.T) {
	h := newHarness(t, nil)
	res := h.do(t, "POST", "/generate?ttl=60", `{"a":1}`, jsonCT, "x-api-key: "+partnerKey)
	token := res.json(t)["token"].(string)
	h.clock.Add(59 * time.Second)
	if res := h.do(t, "GET", "/verify", "", "x-api-token: "+token); res.status != 200 {
		t.Fatalf("before expiry: %d", res.status)
	}
	h.clock.Add(time.Second)
	wantError(t, h.do(t, "GET", "/verify", "", "x-api-token: "+token), 403, "invalid_token")
}

// countingStore counts how often the store is asked, to show that
// malformed tokens never reach it.
type countingStore struct {
	Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, id store.ID) (store.Record, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, id)
}

func (c *countingStore) Consume(ctx context.Context, id store.ID, now time.Time, note string) (store.Record, error) {
	c.gets.Add(1)
	return c.Store.Consume(ctx, id, now, note)
}

func TestMalformedTokenNeverReachesStore(t *testing.T) {
	var cs *countingStore
	h := newHarness(t, func(c *Config) { cs = &countingStore{Store: c.Store}; c.Store = cs })
	for _, tok := range []string{"", "x", "not-a-uuid-but-36-characters-long-xx", strings.Repeat("a", 5000)} {
		wantError(t, h.do(t, "GET", "/verify", "", "x-api-token: "+tok), 403, "invalid_token")
	}
	if n := cs.gets.Load(); n != 0 {
		t.Fatalf("the store was asked %d times", n)
	}
}

// failingStore answers every call with err; hanging blocks until the
// context ends, like a Redis that stopped answering.
type failingStore struct {
	err     error
	hanging bool
}

func (f failingStore) wait(ctx context.Context) error {
	if f.hanging {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", store.ErrUnavailable, ctx.Err())
	}
	return f.err
}
func (f failingStore) Put(ctx context.Context, _ store.ID, _ store.Record, _ string) error {
	return f.wait(ctx)
}
func (f failingStore) KeyIDs(ctx context.Context) ([]string, error)       { return nil, f.wait(ctx) }
func (f failingStore) SetKeyIDs(ctx context.Context, _, _ []string) error { return f.wait(ctx) }
func (f failingStore) Get(ctx context.Context, _ store.ID) (store.Record, error) {
	return store.Record{}, f.wait(ctx)
}
func (f failingStore) Consume(ctx context.Context, _ store.ID, _ time.Time, _ string) (store.Record, error) {
	return store.Record{}, f.wait(ctx)
}
func (f failingStore) ConsumeMany(ctx context.Context, ids []store.ID, _ time.Time, _ string) []store.Result {
	err := f.wait(ctx)
	out := make([]store.Result, len(ids))
	for i := range out {
		out[i].Err = err
	}
	return out
}
func (f failingStore) GetMany(ctx context.Context, ids []store.ID) []store.Result {
	return f.ConsumeMany(ctx, ids, time.Time{}, "")
}
func (f failingStore) Take(ctx context.Context, _ store.ID, _ time.Time) (store.Record, error) {
	return store.Record{}, f.wait(ctx)
}
func (f failingStore) Restore(ctx context.Context, _ store.ID, _ store.Record) error {
	return f.wait(ctx)
}
func (f failingStore) Revoke(ctx context.Context, _ store.ID, _ time.Time, _ string) error {
	return f.wait(ctx)
}
func (f failingStore) Annotate(ctx context.Context, _ time.Time, _ ...store.Note) error {
	return f.wait(ctx)
}
func (f failingStore) History(ctx context.Context, _ store.ID) ([]store.Entry, error) {
	return nil, f.wait(ctx)
}
func (f failingStore) RevokeKey(ctx context.Context, _ string) (uint64, error) { return 0, f.wait(ctx) }
func (f failingStore) Ping(ctx context.Context) error                          { return f.wait(ctx) }
func (f failingStore) PutMarker(ctx context.Context, _ store.ID, _ []byte, _ time.Duration) error {
	return f.wait(ctx)
}
func (f failingStore) GetMarker(ctx context.Context, _ store.ID) ([]byte, error) {
	return nil, f.wait(ctx)
}

func TestStoreFailures(t *testing.T) {
	token := uuid.Must(uuid.NewRandom()).String()
	cases := []struct {
		name   string
		store  failingStore
		status int
		code   string
	}{
		{"down", failingStore{err: fmt.Errorf("dial: %w", store.ErrUnavailable)}, 503, "store_unavailable"},
		{"hanging", failingStore{hanging: true}, 503, "store_unavailable"},
		{"bug", failingStore{err: errors.New("WRONGTYPE secret detail")}, 500, "internal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Store = tc.store; c.StoreTimeout = 50 * time.Millisecond })
			for _, res := range []response{
				h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: "+partnerKey),
				h.do(t, "GET", "/verify", "", "x-api-token: "+token),
				h.do(t, "GET", "/readyz", ""),
			} {
				wantError(t, res, tc.status, tc.code)
				if strings.Contains(string(res.body), "WRONGTYPE") {
					t.Errorf("an internal error reached the client: %s", res.body)
				}
			}
			if tc.code == "internal" && !strings.Contains(h.logs.String(), "WRONGTYPE") {
				t.Error("the internal error was not logged")
			}
		})
	}
}

func TestOperations(t *testing.T) {
	h := newHarness(t, nil)
	if res := h.do(t, "GET", "/healthz", ""); res.status != 200 || res.json(t)["status"] != "ok" {
		t.Errorf("healthz: %d %s", res.status, res.body)
	}
	if res := h.do(t, "GET", "/readyz", ""); res.status != 200 {
		t.Errorf("readyz: %d %s", res.status, res.body)
	}
	res := h.do(t, "GET", "/openapi.yaml", "")
	if res.status != 200 || string(res.body) != string(api.Spec) || res.header.Get("Content-Type") != "application/yaml" {
		t.Errorf("openapi.yaml: %d %q", res.status, res.header.Get("Content-Type"))
	}
	for _, target := range []string{"/healthz", "/openapi.yaml", "/nope"} {
		res := h.do(t, "GET", target, "")
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
			if got := res.header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", target, k, got, want)
			}
		}
		if res.header.Get("X-Request-Id") == "" || !strings.Contains(res.header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s: missing standard headers: %v", target, res.header)
		}
	}
	// Minted tokens must not be cached anywhere on the way.
	gen := h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: "+partnerKey)
	if gen.header.Get("Cache-Control") != "no-store" {
		t.Errorf("generate Cache-Control = %q", gen.header.Get("Cache-Control"))
	}
	// The docs page is served, with its own policy allowing its script.
	req := httptest.NewRequest("GET", "/docs", nil)
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "redoc") {
		t.Errorf("/docs: %d", rec.Code)
	}
}

// A panicking handler is a 500 whose detail stays in the log.
func TestPanicIsInternal(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Partners = panicPartners{} })
	wantError(t, h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: x"), 500, "internal")
	if !strings.Contains(h.logs.String(), "boom") {
		t.Error("the panic was not logged")
	}
}

// Logs name tokens by token_id and never hold a token or a key.
func TestLogsHoldNoSecrets(t *testing.T) {
	h := newHarness(t, nil)
	token := h.generate(t, `{"auth":"partner-api-key-in-bundle"}`)
	h.do(t, "GET", "/verify", "", "x-api-token: "+token)
	h.do(t, "GET", "/verify", "", "Authorization: Bearer "+token)
	h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: wrong-"+partnerKey)
	logs := h.logs.String()
	for _, secret := range []string{token, partnerKey, "partner-api-key-in-bundle"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, tokenID(token).String()) {
		t.Errorf("logs do not name the token by its id:\n%s", logs)
	}
	if !strings.Contains(logs, `"request_id"`) {
		t.Error("logs have no request id")
	}
}

func TestRequestID(t *testing.T) {
	h := newHarness(t, nil)
	if got := h.do(t, "GET", "/healthz", "", "X-Request-Id: abc-123").header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("a plain caller id was not kept: %q", got)
	}
	if got := h.do(t, "GET", "/healthz", "", "X-Request-Id: bad\"id{}").header.Get("X-Request-Id"); got == "" || strings.ContainsAny(got, "\"{}") {
		t.Errorf("an unsafe caller id was kept: %q", got)
	}
}

func TestNewValidates(t *testing.T) {
	h := newHarness(t, nil)
	good := h.srv.cfg
	cases := map[string]func(*Config){
		"no store":      func(c *Config) { c.Store = nil },
		"no partners":   func(c *Config) { c.Partners = nil },
		"ttl below 1s":  func(c *Config) { c.TokenTTL = time.Millisecond },
		"ttl above max": func(c *Config) { c.TokenTTL, c.MaxTokenTTL = 2*time.Hour, time.Hour },
	}
	for name, edit := range cases {
		cfg := good
		edit(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// Oversized headers get the JSON error too, not the HTTP server's text.
func TestHeadersTooLarge(t *testing.T) {
	h := newHarness(t, nil)
	for _, target := range []string{"/healthz", "/verify", "/nope"} {
		res := h.do(t, "GET", target, "", "X-Big: "+strings.Repeat("a", 33<<10))
		wantError(t, res, 431, "headers_too_large")
	}
	if res := h.do(t, "GET", "/healthz", "", "X-Fine: "+strings.Repeat("a", 30<<10)); res.status != 200 {
		t.Fatalf("30 KiB of headers: %d", res.status)
	}
}
