package server

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/server/ratelimit"
)

func withLimits(failures ratelimit.Limit) func(*Config) {
	return func(c *Config) {
		c.Limiter = ratelimit.NewMemory(c.Now)
		c.FailureRate = failures
		if !failures.Zero() && (c.MaxBatch == 0 || c.MaxBatch > failures.N) {
			c.MaxBatch = failures.N // a guard smaller than a batch is refused
		}
	}
}

// Failed token checks from one address are limited; then that address is
// refused even with a good token, until the limit allows again. Other
// addresses are not affected.
func TestBruteForceGuard(t *testing.T) {
	h := newHarness(t, withLimits(ratelimit.Limit{N: 5, Per: time.Minute}))
	good := h.mint(t, "", `{"a":1}`)
	attacker := "RemoteAddr: 198.51.100.7:4000"
	bad := "00000000-0000-4000-8000-000000000000"
	for i := 0; i < 5; i++ {
		wantError(t, h.verify(t, bad, attacker), 403, "invalid_token")
	}
	res := h.verify(t, bad, attacker)
	wantError(t, res, 429, "rate_limited")
	if res.header.Get("Retry-After") != "12" {
		t.Errorf("Retry-After = %q, want 12 (one failure every 12 s)", res.header.Get("Retry-After"))
	}
	wantError(t, h.verify(t, good, attacker), 429, "rate_limited")
	wantError(t, h.do(t, "GET", "/auth", "", "x-api-token: "+good, attacker), 429, "rate_limited")
	if res := h.verify(t, good, "RemoteAddr: 198.51.100.8:4000"); res.status != 200 {
		t.Fatalf("another address: %d", res.status)
	}
	h.clock.Add(13 * time.Second)
	if res := h.verify(t, good, attacker); res.status != 200 {
		t.Fatalf("after Retry-After: %d %s", res.status, res.body)
	}
	// Successes are never counted.
	for i := 0; i < 20; i++ {
		if res := h.verify(t, good, "RemoteAddr: 198.51.100.9:4000"); res.status != 200 {
			t.Fatalf("success %d limited: %d", i, res.status)
		}
	}
}

// A batch counts each failed token: guessing 100 at a time does not get
// around the guard.
func TestBruteForceGuardCountsBatchFailures(t *testing.T) {
	h := newHarness(t, withLimits(ratelimit.Limit{N: 5, Per: time.Minute}))
	guesses := make([]string, 5)
	for i := range guesses {
		guesses[i] = fmt.Sprintf("%q", fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
	}
	body := `{"tokens":[` + strings.Join(guesses, ",") + `]}`
	if res := h.do(t, "POST", "/verify/batch", body, jsonCT); res.status != 200 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	wantError(t, h.do(t, "POST", "/verify/batch", body, jsonCT), 429, "rate_limited")
}

// Behind a trusted proxy the client is the X-Forwarded-For address; from
// anyone else the header is ignored.
func TestTrustedProxies(t *testing.T) {
	_, proxies, _ := net.ParseCIDR("192.0.2.0/24") // httptest's peer is 192.0.2.1
	h := newHarness(t, func(c *Config) {
		withLimits(ratelimit.Limit{N: 1, Per: time.Minute})(c)
		c.TrustedProxies = []*net.IPNet{proxies}
	})
	bad := "00000000-0000-4000-8000-000000000000"
	h.verify(t, bad, "X-Forwarded-For: 203.0.113.1")
	wantError(t, h.verify(t, bad, "X-Forwarded-For: 203.0.113.1"), 429, "rate_limited")
	wantError(t, h.verify(t, bad, "X-Forwarded-For: 203.0.113.2"), 403, "invalid_token")

	direct := newHarness(t, withLimits(ratelimit.Limit{N: 1, Per: time.Minute}))
	direct.verify(t, bad, "X-Forwarded-For: 203.0.113.1")
	wantError(t, direct.verify(t, bad, "X-Forwarded-For: 203.0.113.2"), 429, "rate_limited")
}

func TestMintingRate(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		withKeys(t, "- id: slow\n  server_secret: slow-key-123\n  rate_limit: 2/m\n- id: fast\n  server_secret: fast-key-123\n")(c)
		withLimits(ratelimit.Limit{})(c)
		c.GenerateRate = ratelimit.Limit{N: 3, Per: time.Minute}
	})
	mint := func(key string) response {
		return h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: "+key)
	}
	for i := 0; i < 2; i++ {
		if res := mint("slow-key-123"); res.status != 200 {
			t.Fatalf("slow %d: %d", i, res.status)
		}
	}
	wantError(t, mint("slow-key-123"), 429, "rate_limited")
	for i := 0; i < 3; i++ {
		if res := mint("fast-key-123"); res.status != 200 {
			t.Fatalf("default-limited key %d: %d", i, res.status)
		}
	}
	wantError(t, mint("fast-key-123"), 429, "rate_limited")
}
