package server

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/server/ratelimit"
)

const gatewaySecret = "gw-secret-5e4d3c2b1a09f8e7"

// Private fields go out as X-Token-* headers only to a caller that proves
// to be the gateway; anyone else holding the token gets the public ones,
// and a wrong proof is refused before the token is used.
func TestForwardAuthPrivateFieldsNeedTheGateway(t *testing.T) {
	const bundle = `{"userId":"u-1","auth":"partner-api-key"}`
	public := map[string]string{"X-Token-Userid": "u-1", "X-Token-Auth": ""}
	all := map[string]string{"X-Token-Userid": "u-1", "X-Token-Auth": "partner-api-key"}
	cases := []struct {
		name   string
		secret string // Config.ForwardSecret
		send   bool   // whether X-Gateway-Secret is sent
		proof  string // its value
		want   map[string]string
		code   string // the error, when refused
	}{
		{"secret configured, no proof", gatewaySecret, false, "", public, ""},
		{"secret configured, right proof", gatewaySecret, true, gatewaySecret, all, ""},
		{"secret configured, wrong proof", gatewaySecret, true, "guess-0123456789abcdef", nil, "unauthorized"},
		{"secret configured, a longer proof", gatewaySecret, true, gatewaySecret + "x", nil, "unauthorized"},
		{"secret configured, empty proof", gatewaySecret, true, "", nil, "unauthorized"},
		// Two header lines reach the handler as one value joined by ",".
		{"secret configured, proof sent twice", gatewaySecret, true, gatewaySecret + "," + gatewaySecret, nil, "unauthorized"},
		{"no secret configured, no proof", "", false, "", public, ""},
		// A gateway sending a proof nobody configured is misconfigured: loud.
		{"no secret configured, some proof", "", true, gatewaySecret, nil, "unauthorized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.ForwardFields = []string{"userId", "auth"}
				c.ForwardSecret = tc.secret
			})
			token := h.mint(t, "?private=auth&uses=1", bundle)
			headers := []string{"x-api-token: " + token}
			if tc.send {
				headers = append(headers, gatewayHeader+": "+tc.proof)
			}
			res := h.do(t, "GET", "/auth", "", headers...)
			want := tc.want
			if tc.code != "" {
				wantError(t, res, 401, tc.code)
				for k := range res.header {
					if strings.HasPrefix(k, "X-Token-") {
						t.Errorf("a refused proof got %s", k)
					}
				}
				// The refusal spent no use: the single-use token still
				// opens once, for the public fields.
				res = h.do(t, "GET", "/auth", "", headers[0])
				want = public
			}
			if res.status != 200 {
				t.Fatalf("%d %s", res.status, res.body)
			}
			for k, v := range want {
				if got := res.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if logs := h.logs.String(); strings.Contains(logs, gatewaySecret) || strings.Contains(logs, "partner-api-key") {
				t.Errorf("a secret reached the log:\n%s", logs)
			}
		})
	}
}

// Wrong proofs count against the caller's address like failed token
// checks: the gateway secret cannot be guessed faster than a token.
func TestForwardAuthWrongProofIsGuarded(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		withLimits(ratelimit.Limit{N: 3, Per: time.Minute})(c)
		c.ForwardFields = []string{"userId"}
		c.ForwardSecret = gatewaySecret
	})
	token := h.mint(t, "", `{"userId":"u-1"}`)
	guesser := "RemoteAddr: 198.51.100.7:4000"
	for i := 0; i < 3; i++ {
		wantError(t, h.do(t, "GET", "/auth", "", "x-api-token: "+token, guesser, gatewayHeader+": guess-0123456789abcde"+string(rune('a'+i))), 401, "unauthorized")
	}
	wantError(t, h.do(t, "GET", "/auth", "", "x-api-token: "+token, guesser, gatewayHeader+": guess-0123456789abcdez"), 429, "rate_limited")
	wantError(t, h.do(t, "GET", "/auth", "", "x-api-token: "+token, guesser, gatewayHeader+": "+gatewaySecret), 429, "rate_limited")
	if res := h.do(t, "GET", "/auth", "", "x-api-token: "+token, "RemoteAddr: 198.51.100.8:4000", gatewayHeader+": "+gatewaySecret); res.status != 200 {
		t.Fatalf("another address: %d %s", res.status, res.body)
	}
}

// With ForwardCacheTTL, /auth's 200 for a token whose uses are not counted
// and whose expiry does not slide may be kept by the gateway for the
// setting, never past the token's expiry; everything else, and everything
// without the setting, is no-store.
func TestForwardAuthCacheHeaders(t *testing.T) {
	cases := []struct {
		name    string
		setting time.Duration
		query   string        // the token's policy
		later   time.Duration // how long after minting /auth is asked
		want    string        // Cache-Control of the answer
		status  int
	}{
		{"off", 0, "", 0, "no-store", 200},
		{"on", time.Minute, "", 0, "private, max-age=60", 200},
		{"cut to the time left", time.Minute, "?ttl=30", 0, "private, max-age=30", 200},
		{"cut to the time left, later", time.Minute, "?ttl=30", 10500 * time.Millisecond, "private, max-age=19", 200},
		{"under a second left", time.Minute, "?ttl=30", 29500 * time.Millisecond, "no-store", 200},
		{"a use limit counts every check", time.Minute, "?uses=5", 0, "no-store", 200},
		{"an idle expiry slides on every check", time.Minute, "?idle_ttl=600", 0, "no-store", 200},
		{"expired: refused, never kept", time.Minute, "?ttl=30", 31 * time.Second, "no-store", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.ForwardCacheTTL = tc.setting })
			token := h.mint(t, tc.query, `{"userId":"u-1"}`)
			h.clock.Add(tc.later)
			res := h.do(t, "GET", "/auth", "", "x-api-token: "+token)
			if res.status != tc.status {
				t.Fatalf("/auth: %d %s, want %d", res.status, res.body, tc.status)
			}
			if got := res.header.Values("Cache-Control"); len(got) != 1 || got[0] != tc.want {
				t.Errorf("Cache-Control %q, want %q", got, tc.want)
			}
			accel := res.header.Get("X-Accel-Expires")
			if want := strings.TrimPrefix(tc.want, "private, max-age="); want != tc.want && accel != want {
				t.Errorf("X-Accel-Expires %q, want %q", accel, want)
			} else if want == tc.want && accel != "" {
				t.Errorf("X-Accel-Expires %q on a no-store answer", accel)
			}
		})
	}
}
