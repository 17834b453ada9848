package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tokensvc/tokensvc/server/keys"
)

// mint calls /generate with query parameters and returns the token.
func (h *harness) mint(t *testing.T, query, bundle string, headers ...string) string {
	t.Helper()
	headers = append([]string{jsonCT, "x-api-key: " + partnerKey}, headers...)
	res := h.do(t, "POST", "/generate"+query, bundle, headers...)
	if res.status != 200 {
		t.Fatalf("generate%s: %d %s", query, res.status, res.body)
	}
	return res.json(t)["token"].(string)
}

func (h *harness) verify(t *testing.T, token string, headers ...string) response {
	t.Helper()
	return h.do(t, "GET", "/verify", "", append([]string{"x-api-token: " + token}, headers...)...)
}

func TestUses(t *testing.T) {
	h := newHarness(t, nil)
	single := h.mint(t, "?uses=1", `{"a":1}`)
	if res := h.verify(t, single); res.status != 200 {
		t.Fatalf("first use: %d %s", res.status, res.body)
	}
	wantError(t, h.verify(t, single), 403, "token_used")
	wantError(t, h.verify(t, single), 403, "token_used")

	three := h.mint(t, "?uses=3", `{"a":1}`)
	for i := 0; i < 3; i++ {
		if res := h.verify(t, three); res.status != 200 {
			t.Fatalf("use %d: %d", i+1, res.status)
		}
	}
	wantError(t, h.verify(t, three), 403, "token_used")
}

func TestReuseGrace(t *testing.T) {
	h := newHarness(t, nil)
	token := h.mint(t, "?uses=1&reuse_grace=10", `{"a":1}`)
	if res := h.verify(t, token); res.status != 200 {
		t.Fatal(res.status)
	}
	h.clock.Add(5 * time.Second)
	if res := h.verify(t, token); res.status != 200 {
		t.Fatalf("reload within the grace: %d %s", res.status, res.body)
	}
	h.clock.Add(6 * time.Second)
	wantError(t, h.verify(t, token), 403, "token_used")
}

func TestIdleTTL(t *testing.T) {
	h := newHarness(t, nil)
	token := h.mint(t, "?ttl=3600&idle_ttl=60", `{"a":1}`)
	for i := 0; i < 3; i++ { // 150 s in all, never 60 s idle
		h.clock.Add(50 * time.Second)
		if res := h.verify(t, token); res.status != 200 {
			t.Fatalf("active use %d: %d", i, res.status)
		}
	}
	h.clock.Add(61 * time.Second)
	wantError(t, h.verify(t, token), 403, "invalid_token")
}

func TestPolicyErrors(t *testing.T) {
	h := newHarness(t, nil)
	for _, q := range []string{"?uses=0", "?uses=1000001", "?reuse_grace=5", "?uses=1&reuse_grace=301", "?ttl=60&idle_ttl=61", "?idle_ttl=0", "?private=" + strings.Repeat("a,", 65)} {
		res := h.do(t, "POST", "/generate"+q, `{}`, jsonCT, "x-api-key: "+partnerKey)
		wantError(t, res, 400, "bad_request")
	}
}

// Private fields reach only the minting partner's backend.
func TestPrivateFields(t *testing.T) {
	h := newHarness(t, nil)
	token := h.mint(t, "?private=auth,server,absent", `{"auth":"partner-secret","file":"/a.dwg","n":{"x":1},"server":"s1"}`)
	if res := h.verify(t, token); string(res.body) != `{"file":"/a.dwg","n":{"x":1}}` {
		t.Errorf("browser view: %s", res.body)
	}
	if res := h.verify(t, token, "x-api-key: "+otherKey); string(res.body) != `{"file":"/a.dwg","n":{"x":1}}` {
		t.Errorf("another partner's view: %s", res.body)
	}
	if res := h.verify(t, token, "x-api-key: "+partnerKey); string(res.body) != `{"file":"/a.dwg","n":{"x":1},"auth":"partner-secret","server":"s1"}` {
		t.Errorf("minting partner's view: %s", res.body)
	}
	wantError(t, h.verify(t, token, "x-api-key: wrong"), 403, "invalid_api_key")
	// All fields private: the browser sees an empty object.
	token = h.mint(t, "?private=a", `{"a":1}`)
	if res := h.verify(t, token); string(res.body) != `{}` {
		t.Errorf("all private: %s", res.body)
	}
}

func TestTokenLookupAndRevoke(t *testing.T) {
	h := newHarness(t, nil)
	res := h.do(t, "POST", "/generate?uses=2&private=auth&idle_ttl=600", `{"auth":"x","f":1}`, jsonCT, "x-api-key: "+partnerKey)
	token, id := res.json(t)["token"].(string), res.json(t)["token_id"].(string)
	h.verify(t, token)
	info := h.do(t, "GET", "/tokens/"+id, "", "x-api-key: "+partnerKey)
	if info.status != 200 {
		t.Fatalf("lookup: %d %s", info.status, info.body)
	}
	got := info.json(t)
	for k, want := range map[string]string{"state": "live", "uses": "1", "max_uses": "2", "uses_left": "1", "idle_ttl": "600", "token_id": id} {
		if fmt.Sprint(got[k]) != want {
			t.Errorf("%s = %v, want %s", k, got[k], want)
		}
	}
	// Looking does not use it; another partner sees nothing.
	if res := h.verify(t, token); res.status != 200 {
		t.Fatalf("lookup spent a use: %d", res.status)
	}
	wantError(t, h.do(t, "GET", "/tokens/"+id, "", "x-api-key: "+otherKey), 404, "not_found")
	wantError(t, h.do(t, "DELETE", "/tokens/"+id, "", "x-api-key: "+otherKey), 404, "not_found")
	wantError(t, h.do(t, "GET", "/tokens/"+id, ""), 403, "invalid_api_key")
	wantError(t, h.do(t, "GET", "/tokens/nothex", "", "x-api-key: "+partnerKey), 404, "not_found")

	token = h.mint(t, "", `{"a":1}`)
	id = tokenID(token).String()
	if res := h.do(t, "DELETE", "/tokens/"+id, "", "x-api-key: "+partnerKey); res.status != 204 {
		t.Fatalf("revoke: %d %s", res.status, res.body)
	}
	wantError(t, h.verify(t, token), 403, "token_revoked")
	if res := h.do(t, "DELETE", "/tokens/"+id, "", "x-api-key: "+partnerKey); res.status != 204 {
		t.Fatalf("second revoke: %d", res.status)
	}
	if got := h.do(t, "GET", "/tokens/"+id, "", "x-api-key: "+partnerKey).json(t)["state"]; got != "revoked" {
		t.Errorf("state after revoke = %v", got)
	}
}

func TestRefresh(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxSessionLifetime = 2 * time.Hour })
	old := h.mint(t, "?ttl=3600&private=auth", `{"auth":"x","f":1}`)
	res := h.do(t, "POST", "/refresh", "", "x-api-token: "+old)
	if res.status != 200 {
		t.Fatalf("refresh: %d %s", res.status, res.body)
	}
	fresh := res.json(t)["token"].(string)
	if fmt.Sprint(res.json(t)["expires_in"]) != "3600" {
		t.Errorf("expires_in = %v", res.json(t)["expires_in"])
	}
	wantError(t, h.verify(t, old), 403, "token_revoked")
	if res := h.verify(t, fresh, "x-api-key: "+partnerKey); string(res.body) != `{"f":1,"auth":"x"}` {
		t.Fatalf("fresh token: %d %s", res.status, res.body)
	}
	// 50 minutes in, a refresh gets the full hour again; 100 minutes in, it
	// is capped at the session's 2 hours.
	h.clock.Add(50 * time.Minute)
	res = h.do(t, "POST", "/refresh", "", "Authorization: Bearer "+fresh)
	if got := fmt.Sprint(res.json(t)["expires_in"]); got != "3600" {
		t.Fatalf("expires_in = %s; %s", got, res.body)
	}
	h.clock.Add(50 * time.Minute)
	res = h.do(t, "POST", "/refresh", "", "x-api-token: "+res.json(t)["token"].(string))
	if got := fmt.Sprint(res.json(t)["expires_in"]); got != "1200" {
		t.Fatalf("capped expires_in = %s; %s", got, res.body)
	}
	last := res.json(t)["token"].(string)
	h.clock.Add(20*time.Minute - 500*time.Millisecond)
	wantError(t, h.do(t, "POST", "/refresh", "", "x-api-token: "+last), 403, "session_expired")
	if res := h.verify(t, last); res.status != 200 {
		t.Fatalf("a refused refresh ended the token: %d", res.status)
	}
	wantError(t, h.do(t, "POST", "/refresh", "", "x-api-token: nope"), 403, "invalid_token")
}

func TestBatchVerify(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBatch = 5 })
	live := h.mint(t, "?private=auth", `{"n":1,"auth":"x"}`)
	single := h.mint(t, "?uses=1", `{"n":2}`)
	revoked := h.mint(t, "", `{"n":3}`)
	h.do(t, "DELETE", "/tokens/"+tokenID(revoked).String(), "", "x-api-key: "+partnerKey)
	body := fmt.Sprintf(`{"tokens":[%q,"garbage",%q,%q,%q]}`, live, single, revoked, single)
	res := h.do(t, "POST", "/verify/batch", body, jsonCT)
	if res.status != 200 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	want := `{"results":[{"bundle":{"n":1},"valid":true},{"error":"invalid_token","valid":false},{"bundle":{"n":2},"valid":true},{"error":"token_revoked","valid":false},{"error":"token_used","valid":false}]}`
	if strings.TrimSpace(string(res.body)) != want {
		t.Errorf("results:\n got %s\nwant %s", res.body, want)
	}
	res = h.do(t, "POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q]}`, live), jsonCT, "x-api-key: "+partnerKey)
	if !strings.Contains(string(res.body), `{"n":1,"auth":"x"}`) {
		t.Errorf("the minting partner gets private fields: %s", res.body)
	}
	wantError(t, h.do(t, "POST", "/verify/batch", `{"tokens":["a","b","c","d","e","f"]}`, jsonCT), 400, "invalid_body")
	wantError(t, h.do(t, "POST", "/verify/batch", `{"tokens":[]}`, jsonCT), 400, "invalid_body")
	wantError(t, h.do(t, "POST", "/verify/batch", `{"tokens":`, jsonCT), 400, "bad_request")
	wantError(t, h.do(t, "POST", "/verify/batch", `{}`, "Content-Type: text/plain"), 415, "unsupported_media_type")
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.IdempotencySecret = []byte("0123456789abcdef0123456789abcdef") })
	first := h.do(t, "POST", "/generate", `{"a":1}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: order-1").json(t)
	h.clock.Add(10 * time.Second)
	again := h.do(t, "POST", "/generate", `{"a":1}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: order-1").json(t)
	if first["token"] != again["token"] || fmt.Sprint(first["expiration_time"]) != fmt.Sprint(again["expiration_time"]) {
		t.Fatalf("a retry minted another token: %v vs %v", first, again)
	}
	if fmt.Sprint(again["expires_in"]) != "3590" {
		t.Errorf("retry expires_in = %v, want the time left", again["expires_in"])
	}
	other := h.do(t, "POST", "/generate", `{"a":1}`, jsonCT, "x-api-key: "+otherKey, "Idempotency-Key: order-1").json(t)
	if other["token"] == first["token"] {
		t.Fatal("two partners' equal Idempotency-Keys gave the same token")
	}
	wantError(t, h.do(t, "POST", "/generate", `{"a":2}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: order-1"), 409, "idempotency_conflict")
	wantError(t, h.do(t, "POST", "/generate?uses=1", `{"a":1}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: order-1"), 409, "idempotency_conflict")
	if u, err := uuid.Parse(first["token"].(string)); err != nil || u.Version() != 4 {
		t.Errorf("token is not a UUID v4: %v", first["token"])
	}

	// Once the token has ended, its Idempotency-Key never brings it back,
	// with the same request or another: a token is minted once.
	res := h.do(t, "POST", "/generate?ttl=2", `{"a":"alice"}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: order-2")
	ended := res.json(t)["token"].(string)
	h.clock.Add(3 * time.Second)
	wantError(t, h.verify(t, ended), 403, "invalid_token")
	wantError(t, h.do(t, "POST", "/generate?ttl=2", `{"a":"mallory"}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: order-2"), 409, "idempotency_conflict")
	wantError(t, h.do(t, "POST", "/generate?ttl=2", `{"a":"alice"}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: order-2"), 409, "idempotency_conflict")
	wantError(t, h.verify(t, ended), 403, "invalid_token")
	// It stays a conflict until the longest token lifetime has passed.
	h.clock.Add(h.srv.cfg.MaxTokenTTL)
	if res := h.do(t, "POST", "/generate", `{"a":"alice"}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: order-2"); res.status != 200 || res.json(t)["token"] == ended {
		t.Errorf("after the longest lifetime: %d %s", res.status, res.body)
	}

	off := newHarness(t, nil)
	wantError(t, off.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: k"), 400, "idempotency_unavailable")
}

func TestAdmin(t *testing.T) {
	off := newHarness(t, nil)
	wantError(t, off.do(t, "GET", "/admin/keys", "", "X-Admin-Token: x"), 404, "not_found")

	h := newHarness(t, func(c *Config) { c.AdminToken = "admin-secret-token" })
	wantError(t, h.do(t, "GET", "/admin/keys", ""), 401, "unauthorized")
	wantError(t, h.do(t, "GET", "/admin/keys", "", "X-Admin-Token: admin-secret-tokeN"), 401, "unauthorized")
	admin := "X-Admin-Token: admin-secret-token"
	res := h.do(t, "GET", "/admin/keys", "", admin)
	if res.status != 200 || strings.Contains(string(res.body), partnerKey) || len(res.json(t)["keys"].([]any)) != 2 {
		t.Fatalf("list keys: %d %s", res.status, res.body)
	}
	if res := h.do(t, "POST", "/admin/reload", "", admin); res.status != 200 {
		t.Fatalf("reload: %d %s", res.status, res.body)
	}

	// Revoking every token of a key: older ones die, newer ones and other
	// partners' live.
	before := h.mint(t, "", `{}`)
	mine, _, _ := h.srv.cfg.Partners.Authenticate(partnerKey, "")
	theirs := h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: "+otherKey).json(t)["token"].(string)
	res = h.do(t, "POST", "/admin/keys/"+mine.ID+"/revoke-tokens", "", admin)
	if res.status != 200 || fmt.Sprint(res.json(t)["epoch"]) != "1" {
		t.Fatalf("revoke-tokens: %d %s", res.status, res.body)
	}
	wantError(t, h.verify(t, before), 403, "token_revoked")
	if res := h.verify(t, theirs); res.status != 200 {
		t.Errorf("another partner's token died: %d", res.status)
	}
	after := h.mint(t, "", `{}`)
	if res := h.verify(t, after); res.status != 200 {
		t.Errorf("a token minted after the revocation: %d %s", res.status, res.body)
	}
	if got := h.do(t, "GET", "/tokens/"+tokenID(before).String(), "", "x-api-key: "+partnerKey).json(t)["state"]; got != "revoked" {
		t.Errorf("state of a key-revoked token = %v", got)
	}

	res = h.do(t, "DELETE", "/admin/tokens/"+tokenID(theirs).String(), "", admin)
	if res.status != 204 {
		t.Fatalf("admin revoke: %d %s", res.status, res.body)
	}
	wantError(t, h.verify(t, theirs), 403, "token_revoked")
	wantError(t, h.do(t, "DELETE", "/admin/tokens/"+strings.Repeat("0", 32), "", admin), 404, "not_found")
}

// webKeys has a browser-facing key limited to *.example.com, and a backend
// key for any origin.
const webKeys = `
- id: web
  client_secret: cs-web-123
  server_secret: ss-web-123
  origins: ["*.example.com"]
- id: backend
  server_secret: ss-backend-123
`

func withKeys(t *testing.T, spec string) func(*Config) {
	return func(c *Config) {
		reg, err := keys.New(context.Background(), spec, keys.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c.Partners = reg
	}
}

func TestOrigins(t *testing.T) {
	h := newHarness(t, withKeys(t, webKeys))
	good, evil := "Origin: https://app.example.com", "Origin: https://evilexample.com"
	mint := func(key string, headers ...string) response {
		return h.do(t, "POST", "/generate?uses=1", `{"a":1}`, append([]string{jsonCT, "x-api-key: " + key}, headers...)...)
	}
	if res := mint("cs-web-123", good); res.status != 200 {
		t.Fatalf("client secret from an allowed origin: %d %s", res.status, res.body)
	}
	wantError(t, mint("cs-web-123", evil), 403, "origin_not_allowed")
	wantError(t, mint("cs-web-123"), 403, "origin_not_allowed")

	token := mint("ss-web-123").json(t)["token"].(string)
	wantError(t, h.verify(t, token, evil), 403, "origin_not_allowed")
	if res := h.verify(t, token, good); res.status != 200 {
		t.Fatalf("the refused origin spent the only use: %d %s", res.status, res.body)
	}
	open := mint("ss-backend-123").json(t)["token"].(string)
	if res := h.verify(t, open, evil); res.status != 200 {
		t.Fatalf("a key without origins allows any: %d", res.status)
	}
}

func TestCORS(t *testing.T) {
	h := newHarness(t, withKeys(t, "- id: web\n  client_secret: cs\n  origins: [\"*.example.com\"]\n"))
	res := h.do(t, "OPTIONS", "/verify", "", "Origin: https://app.example.com", "Access-Control-Request-Method: GET", "Access-Control-Request-Headers: x-api-token")
	if res.status != 204 || res.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("preflight: %d %v", res.status, res.header)
	}
	if !strings.Contains(strings.ToLower(res.header.Get("Access-Control-Allow-Headers")), "x-api-token") || !strings.Contains(strings.Join(res.header.Values("Vary"), ","), "Origin") {
		t.Errorf("preflight headers: %v", res.header)
	}
	if res.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials allowed")
	}
	res = h.do(t, "OPTIONS", "/generate", "", "Origin: https://evil.com", "Access-Control-Request-Method: POST")
	if got := res.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("a disallowed origin got Allow-Origin %q", got)
	}
	res = h.do(t, "GET", "/healthz", "", "Origin: https://app.example.com")
	if res.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("simple request: %v", res.header)
	}
}

func TestForwardAuth(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.ForwardCookie = "editor_session"
		c.ForwardFields = []string{"userId", "server", "n", "evil"}
		c.ForwardSecret = gatewaySecret // the private field server goes to the gateway only
	})
	token := h.mint(t, "?private=server", `{"userId":"u-1","server":"s1","n":{"a":1},"evil":"x\r\nInjected: 1","other":"no"}`)
	cases := []struct {
		name, method, path string
		headers            []string
	}{
		{"header", "GET", "/auth", []string{"x-api-token: " + token}},
		{"bearer, envoy sub-path", "POST", "/auth/api/v1/files", []string{"Authorization: Bearer " + token}},
		{"cookie", "GET", "/auth", []string{"Cookie: editor_session=" + token}},
		{"nginx original uri", "GET", "/auth", []string{"X-Original-URI: /editor?file=a&token=" + token}},
		{"traefik forwarded uri", "GET", "/auth/", []string{"X-Forwarded-Uri: /editor?token=" + token}},
		{"envoy path and query", "GET", "/auth/editor/open?token=" + token, nil},
		{"unparsable original path", "GET", "/auth", []string{"X-Original-URI: /a%zz?token=" + token}},
		{"an app's own bearer next to the cookie", "GET", "/auth", []string{"Authorization: Bearer eyJhbGciOi.jwt", "Cookie: editor_session=" + token}},
		{"browser origin is the gateway's business", "GET", "/auth", []string{"x-api-token: " + token, "Origin: https://anything.example"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.do(t, tc.method, tc.path, "", append(tc.headers, gatewayHeader+": "+gatewaySecret)...)
			if res.status != 200 {
				t.Fatalf("%d %s", res.status, res.body)
			}
			want := map[string]string{"X-Token-Userid": "u-1", "X-Token-Server": "s1", "X-Token-N": `{"a":1}`, "X-Token-Evil": "xInjected: 1"}
			for k, v := range want {
				if got := res.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if res.header.Get("X-Token-Other") != "" {
				t.Error("a field not listed was forwarded")
			}
		})
	}
	res := h.do(t, "GET", "/auth", "")
	wantError(t, res, 401, "missing_token")
	if res.header.Get("WWW-Authenticate") == "" {
		t.Error("a 401 without WWW-Authenticate")
	}
	wantError(t, h.do(t, "GET", "/auth/x", "", "X-Original-URI: /editor?token=nope"), 403, "invalid_token")

	single := h.mint(t, "?uses=1", `{"userId":"u"}`)
	if res := h.do(t, "GET", "/auth", "", "x-api-token: "+single); res.status != 200 {
		t.Fatal(res.status)
	}
	wantError(t, h.do(t, "GET", "/auth", "", "x-api-token: "+single), 403, "token_used")
}
