package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/server/ratelimit"
)

// trailSink keeps the audit lines written to it, decoded, or fails while
// broken.
type trailSink struct {
	mu     sync.Mutex
	lines  []string
	broken atomic.Bool
}

func (s *trailSink) Write(_ context.Context, lines [][]byte) error {
	if s.broken.Load() {
		return errors.New("sink broken")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lines {
		s.lines = append(s.lines, string(l))
	}
	return nil
}

// take returns the events written since the last take.
func (s *trailSink) take(t *testing.T) []audit.Event {
	t.Helper()
	s.mu.Lock()
	lines := s.lines
	s.lines = nil
	s.mu.Unlock()
	out := make([]audit.Event, 0, len(lines))
	for _, l := range lines {
		var e audit.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, l)
		}
		if e.Kind != "audit" || e.Time.IsZero() {
			t.Fatalf("audit line without kind or time: %s", l)
		}
		out = append(out, e)
	}
	return out
}

const adminSecret = "admin-secret-token"

// withTrail records the audit trail, required, into sink, with metrics in
// reg and the admin API on.
func withTrail(sink *trailSink, reg *prometheus.Registry) func(*Config) {
	return func(c *Config) {
		c.Audit, c.AuditRequired, c.Metrics, c.AdminToken = sink, true, reg, adminSecret
	}
}

// Every operation's requests are events, successes and refusals alike,
// named by token id and key id, never by a token or a secret.
func TestAuditTrail(t *testing.T) {
	sink := &trailSink{}
	reg := prometheus.NewRegistry()
	h := newHarness(t, withTrail(sink, reg))
	mine, _, _ := h.srv.cfg.Partners.Authenticate(partnerKey, "")
	me := mine.ID
	client := "192.0.2.1" // httptest's peer
	res := h.do(t, "POST", "/generate?uses=1&private=auth&ttl=600", `{"auth":"bundle-secret-1","a":1}`, jsonCT, "x-api-key: "+partnerKey)
	single, singleID := res.json(t)["token"].(string), res.json(t)["token_id"].(string)
	plain := h.mint(t, "", `{"a":2}`)
	plainID := tokenID(plain).String()
	sink.take(t)

	ignore := cmpopts.IgnoreFields(audit.Event{}, "Kind", "Time", "RequestID", "NewTokenID")
	cases := []struct {
		name string
		do   func() response
		want []audit.Event
	}{
		{"MintRefusedKey", func() response {
			return h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: wrong-key")
		}, []audit.Event{{Event: audit.Mint, Outcome: "invalid_api_key", Route: "/generate", Client: client}}},
		{"MintRefusedPolicy", func() response {
			return h.do(t, "POST", "/generate?uses=0", `{}`, jsonCT, "x-api-key: "+partnerKey)
		}, []audit.Event{{Event: audit.Mint, Outcome: "bad_request", Route: "/generate", Client: client, KeyID: me}}},
		{"MintBadParam", func() response {
			return h.do(t, "POST", "/generate?ttl=abc", `{}`, jsonCT, "x-api-key: "+partnerKey)
		}, []audit.Event{{Event: audit.Mint, Outcome: "bad_request", Route: "/generate", Client: client, KeyID: me}}},
		{"Use", func() response { return h.verify(t, single) },
			[]audit.Event{{Event: audit.Use, Outcome: "ok", Route: "/verify", Client: client, KeyID: me, TokenID: singleID, Uses: 1}}},
		{"Reuse", func() response { return h.verify(t, single) },
			[]audit.Event{{Event: audit.Reuse, Outcome: "token_used", Route: "/verify", Client: client, KeyID: me, TokenID: singleID, SuspectedTheft: true}}},
		{"UseUnknown", func() response { return h.verify(t, "00000000-0000-4000-8000-000000000000") },
			[]audit.Event{{Event: audit.Use, Outcome: "invalid_token", Route: "/verify", Client: client, TokenID: tokenID("00000000-0000-4000-8000-000000000000").String()}}},
		{"UseMalformed", func() response { return h.verify(t, "nope") },
			[]audit.Event{{Event: audit.Use, Outcome: "invalid_token", Route: "/verify", Client: client}}},
		{"Batch", func() response {
			return h.do(t, "POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q,%q,"nope"]}`, plain, single), jsonCT)
		}, []audit.Event{
			{Event: audit.Use, Outcome: "invalid_token", Route: "/verify/batch", Client: client},
			{Event: audit.Use, Outcome: "ok", Route: "/verify/batch", Client: client, KeyID: me, TokenID: plainID},
			{Event: audit.Reuse, Outcome: "token_used", Route: "/verify/batch", Client: client, KeyID: me, TokenID: singleID, SuspectedTheft: true},
		}},
		{"Auth", func() response { return h.do(t, "GET", "/auth", "", "x-api-token: "+plain) },
			[]audit.Event{{Event: audit.Use, Outcome: "ok", Route: "/auth", Client: client, KeyID: me, TokenID: plainID}}},
		{"AuthMissing", func() response { return h.do(t, "GET", "/auth", "") },
			[]audit.Event{{Event: audit.Use, Outcome: "missing_token", Route: "/auth", Client: client}}},
		{"Lookup", func() response { return h.do(t, "GET", "/tokens/"+plainID, "", "x-api-key: "+partnerKey) },
			[]audit.Event{{Event: audit.Lookup, Outcome: "ok", Route: "/tokens/:token_id", Client: client, KeyID: me, TokenID: plainID}}},
		{"LookupOthers", func() response { return h.do(t, "GET", "/tokens/"+plainID, "", "x-api-key: "+otherKey) },
			[]audit.Event{{Event: audit.Lookup, Outcome: "not_found", Route: "/tokens/:token_id", Client: client, KeyID: keyIDOf(t, h, otherKey), TokenID: plainID}}},
		{"Refresh", func() response { return h.do(t, "POST", "/refresh", "", "x-api-token: "+plain) },
			[]audit.Event{{Event: audit.Refresh, Outcome: "ok", Route: "/refresh", Client: client, KeyID: me, TokenID: plainID}}},
		{"RefreshAgain", func() response { return h.do(t, "POST", "/refresh", "", "x-api-token: "+plain) },
			[]audit.Event{{Event: audit.Reuse, Outcome: "token_revoked", Route: "/refresh", Client: client, KeyID: me, TokenID: plainID, SuspectedTheft: true}}},
		{"Revoke", func() response { return h.do(t, "DELETE", "/tokens/"+singleID, "", "x-api-key: "+partnerKey) },
			[]audit.Event{{Event: audit.Revoke, Outcome: "ok", Route: "/tokens/:token_id", Client: client, KeyID: me, TokenID: singleID, By: "partner", Scope: "token"}}},
		{"AdminWrongToken", func() response { return h.do(t, "GET", "/admin/keys", "", "X-Admin-Token: nope") },
			[]audit.Event{{Event: audit.Admin, Outcome: "unauthorized", Route: "/admin/keys", Client: client, Action: "list_keys"}}},
		{"AdminListKeys", func() response { return h.do(t, "GET", "/admin/keys", "", "X-Admin-Token: "+adminSecret) },
			[]audit.Event{{Event: audit.Admin, Outcome: "ok", Route: "/admin/keys", Client: client, Action: "list_keys"}}},
		{"AdminReload", func() response { return h.do(t, "POST", "/admin/reload", "", "X-Admin-Token: "+adminSecret) },
			[]audit.Event{{Event: audit.Admin, Outcome: "ok", Route: "/admin/reload", Client: client, Action: "reload"}}},
		{"AdminRevoke", func() response {
			return h.do(t, "DELETE", "/admin/tokens/"+plainID, "", "X-Admin-Token: "+adminSecret)
		}, []audit.Event{{Event: audit.Revoke, Outcome: "ok", Route: "/admin/tokens/:token_id", Client: client, TokenID: plainID, By: "admin", Scope: "token"}}},
		{"AdminRevokeKey", func() response {
			return h.do(t, "POST", "/admin/keys/"+me+"/revoke-tokens", "", "X-Admin-Token: "+adminSecret)
		}, []audit.Event{{Event: audit.Revoke, Outcome: "ok", Route: "/admin/keys/:key_id/revoke-tokens", Client: client, KeyID: me, By: "admin", Scope: "key", Epoch: 1}}},
	}
	for _, tc := range cases {
		res := tc.do()
		got := sink.take(t)
		if diff := cmp.Diff(tc.want, got, ignore, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (answered %d %s): events (-want +got)\n%s", tc.name, res.status, res.body, diff)
		}
	}
	if n := testutil.ToFloat64(h.srv.trailMetrics.reuse.WithLabelValues("token_used")); n != 2 {
		t.Errorf("tokensvc_reuse_total{reason=token_used} = %v, want 2", n)
	}
	if n := testutil.ToFloat64(h.srv.trailMetrics.reuse.WithLabelValues("token_revoked")); n != 1 {
		t.Errorf("tokensvc_reuse_total{reason=token_revoked} = %v, want 1", n)
	}
}

func keyIDOf(t *testing.T, h *harness, secret string) string {
	t.Helper()
	k, _, err := h.srv.cfg.Partners.Authenticate(secret, "")
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// A mint's event has its policy and lifetime, never a bundle value.
func TestAuditMint(t *testing.T) {
	sink := &trailSink{}
	h := newHarness(t, withTrail(sink, prometheus.NewRegistry()))
	h.srv.cfg.IdempotencySecret = []byte(strings.Repeat("i", 32))
	query := "?uses=2&reuse_grace=5&idle_ttl=60&ttl=600&private=auth"
	body := `{"auth":"bundle-secret-2","a":1}`
	first := h.do(t, "POST", "/generate"+query, body, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: k-1")
	again := h.do(t, "POST", "/generate"+query, body, jsonCT, "x-api-key: "+partnerKey, "Idempotency-Key: k-1")
	id := first.json(t)["token_id"].(string)
	if again.json(t)["token_id"] != id {
		t.Fatal("the replay answered another token")
	}
	got := sink.take(t)
	want := audit.Event{Event: audit.Mint, Outcome: "ok", Route: "/generate", Client: "192.0.2.1", KeyID: keyIDOf(t, h, partnerKey), TokenID: id,
		TTL: 600, Policy: &audit.Policy{Uses: 2, ReuseGrace: 5, IdleTTL: 60, Private: []string{"auth"}}}
	replay := want
	replay.Replay = true
	ignore := cmpopts.IgnoreFields(audit.Event{}, "Kind", "Time", "RequestID")
	if diff := cmp.Diff([]audit.Event{want, replay}, got, ignore); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	for _, l := range sink.lines {
		if strings.Contains(l, "bundle-secret") || strings.Contains(l, partnerKey) || strings.Contains(l, "k-1") {
			t.Errorf("a secret in the trail: %s", l)
		}
	}
}

// With the trail required, a request whose event cannot be recorded fails
// with 503 audit_unavailable, refusals included; the failure is counted.
// Not required, it is answered as usual and only counted.
func TestAuditRequiredFailsClosed(t *testing.T) {
	for _, required := range []bool{true, false} {
		t.Run(fmt.Sprintf("required=%v", required), func(t *testing.T) {
			sink := &trailSink{}
			h := newHarness(t, func(c *Config) {
				withTrail(sink, prometheus.NewRegistry())(c)
				c.AuditRequired = required
			})
			token := h.mint(t, "", `{"a":1}`)
			for deadline := time.Now().Add(5 * time.Second); len(sink.take(t)) == 0; { // the queue wrote the mint
				if time.Now().After(deadline) {
					t.Fatal("the mint's event was never written")
				}
				time.Sleep(time.Millisecond)
			}
			sink.broken.Store(true)
			calls := []func() response{
				func() response { return h.verify(t, token) },
				func() response { return h.do(t, "POST", "/generate", `{"a":1}`, jsonCT, "x-api-key: "+partnerKey) },
				func() response { return h.verify(t, "00000000-0000-4000-8000-000000000000") },
				func() response {
					return h.do(t, "POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q]}`, token), jsonCT)
				},
				func() response { return h.do(t, "GET", "/admin/keys", "", "X-Admin-Token: "+adminSecret) },
			}
			for i, call := range calls {
				res := call()
				if required {
					wantError(t, res, 503, "audit_unavailable")
				} else if res.status == 503 {
					t.Errorf("call %d: 503 with the trail not required: %s", i, res.body)
				}
			}
			if !required {
				h.srv.Close(context.Background())
			}
			if n := testutil.ToFloat64(h.srv.trailMetrics.failures); n != float64(len(calls)) {
				t.Errorf("tokensvc_audit_write_failures_total = %v, want %d", n, len(calls))
			}
			if required && !strings.Contains(h.logs.String(), "audit events could not be recorded") {
				t.Errorf("the failure is not logged:\n%s", h.logs)
			}
			sink.broken.Store(false)
			if res := h.verify(t, token); res.status != 200 {
				t.Errorf("once the sink works again: %d %s", res.status, res.body)
			}
		})
	}
}

// The brute-force guard's refusals are blocks, counted. A suspect
// client's check is taken before it runs, so the request past the limit
// is a block, not a refusal.
func TestAuditGuardBlocks(t *testing.T) {
	sink := &trailSink{}
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(c *Config) {
		withTrail(sink, reg)(c)
		withLimits(ratelimit.Limit{N: 2, Per: time.Minute})(c)
	})
	bad := "00000000-0000-4000-8000-000000000000"
	for range 2 {
		wantError(t, h.verify(t, bad), 403, "invalid_token")
	}
	wantError(t, h.verify(t, bad), 429, "rate_limited") // the third check is over the limit
	wantError(t, h.verify(t, bad), 429, "rate_limited") // remembered
	var kinds []string
	for _, e := range sink.take(t) {
		kinds = append(kinds, string(e.Event)+":"+e.Outcome+":"+e.Limit)
		if e.Event == audit.Block && (e.RetryAfter <= 0 || e.Client == "") {
			t.Errorf("a block without its client or wait: %+v", e)
		}
	}
	want := []string{"use:invalid_token:", "use:invalid_token:", "block:rate_limited:failures", "block:rate_limited:failures"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if n := testutil.ToFloat64(h.srv.trailMetrics.blocks); n != 2 {
		t.Errorf("tokensvc_guard_blocks_total = %v, want 2", n)
	}
}

// A reload that changes the keys is an event, and so is the revocation of
// a removed key's tokens.
func TestAuditKeyReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	write := func(keys string) {
		if err := os.WriteFile(path, []byte(keys), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`[{"id":"stays","server_secret":"stays-123"},{"id":"leaked","server_secret":"leaked-123"}]`)
	sink := &trailSink{}
	var reg *keys.Registry
	h := newHarness(t, func(c *Config) {
		withTrail(sink, prometheus.NewRegistry())(c)
		var err error
		if reg, err = keys.New(context.Background(), "file://"+path, keys.Options{}); err != nil {
			t.Fatal(err)
		}
		c.Partners = reg
	})
	if err := h.srv.SyncKeys(context.Background()); err != nil { // as at start-up
		t.Fatal(err)
	}
	reg.OnChange(h.srv.KeysChanged)
	write(`[{"id":"stays","server_secret":"stays-123"},{"id":"new","server_secret":"new-123"}]`)
	if err := reg.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ignore := cmpopts.IgnoreFields(audit.Event{}, "Kind", "Time")
	want := []audit.Event{
		{Event: audit.KeyReload, Outcome: "ok", Generation: 2, Added: []string{"new"}, Removed: []string{"leaked"}},
		{Event: audit.Revoke, Outcome: "ok", KeyID: "leaked", By: "key_removed", Scope: "key", Epoch: 1},
	}
	if diff := cmp.Diff(want, sink.take(t), ignore); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
