package server

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokensvc/tokensvc/api"
)

// lookup returns a token's metadata as its minting partner sees it.
func (h *harness) lookup(t *testing.T, id, key string) api.TokenInfo {
	t.Helper()
	res := h.do(t, "GET", "/tokens/"+id, "", "x-api-key: "+key)
	if res.status != 200 {
		t.Fatalf("look up %s: %d %s", id, res.status, res.body)
	}
	var info api.TokenInfo
	if err := json.Unmarshal(res.body, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// ev is what a test expects of a history event.
func ev(event api.TokenEventEvent, route, code string) api.TokenEvent {
	e := api.TokenEvent{Event: event}
	if route != "" {
		e.Route = &route
	}
	if code != "" {
		e.Error = &code
	}
	return e
}

func wantEvents(t *testing.T, info api.TokenInfo, want ...api.TokenEvent) {
	t.Helper()
	if info.History == nil {
		t.Fatalf("no history in %+v", info)
	}
	ignore := cmpopts.IgnoreFields(api.TokenEvent{}, "At", "NewTokenId", "OldTokenId", "By")
	if diff := cmp.Diff(want, *info.History, ignore); diff != "" {
		t.Fatalf("history (-want +got)\n%s", diff)
	}
}

// The minting partner sees what happened to its token: minted, used,
// presented again once used up (a reuse), and revoked, newest last, with
// times; the reuse is in the metric too.
func TestTokenHistory(t *testing.T) {
	h := newHarness(t, withKeys(t, webKeys))
	res := h.do(t, "POST", "/generate?uses=1", `{"a":1}`, jsonCT, "x-api-key: ss-web-123")
	token, id := res.json(t)["token"].(string), res.json(t)["token_id"].(string)
	h.clock.Add(time.Second)
	if res := h.verify(t, token); res.status != 200 {
		t.Fatal(res.status)
	}
	h.clock.Add(time.Second)
	wantError(t, h.verify(t, token), 403, "token_used")
	wantError(t, h.verify(t, token, "Origin: https://app.example.com"), 403, "token_used") // decided by the server on the tombstone, before any use
	if res := h.do(t, "DELETE", "/tokens/"+id, "", "x-api-key: ss-web-123"); res.status != 204 {
		t.Fatal(res.status)
	}
	info := h.lookup(t, id, "ss-web-123")
	wantEvents(t, info,
		ev(api.TokenEventEventMinted, "/generate", ""),
		ev(api.TokenEventEventUsed, "/verify", ""),
		ev(api.TokenEventEventReused, "/verify", "token_used"),
		ev(api.TokenEventEventReused, "/verify", "token_used"),
		ev(api.TokenEventEventRevoked, "", ""))
	hist := *info.History
	start := time.Unix(1_800_000_000, 0)
	for i, want := range []time.Time{start, start.Add(time.Second), start.Add(2 * time.Second)} {
		if !hist[i].At.Equal(want) {
			t.Errorf("event %d at %s, want %s", i, hist[i].At, want)
		}
	}
	if hist[4].By == nil || *hist[4].By != api.Partner {
		t.Errorf("revoked by %v, want partner", hist[4].By)
	}

	// A browser from an origin the key does not allow: refused before a
	// use is spent, and noted.
	res = h.do(t, "POST", "/generate", `{"a":1}`, jsonCT, "x-api-key: ss-web-123")
	token, id = res.json(t)["token"].(string), res.json(t)["token_id"].(string)
	wantError(t, h.verify(t, token, "Origin: https://evil.test"), 403, "origin_not_allowed")
	if res := h.verify(t, token, "Origin: https://app.example.com"); res.status != 200 {
		t.Fatal(res.status)
	}
	res = h.do(t, "POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q]}`, token), jsonCT, "Origin: https://evil.test")
	if res.status != 200 {
		t.Fatal(res.status)
	}
	wantEvents(t, h.lookup(t, id, "ss-web-123"),
		ev(api.TokenEventEventMinted, "/generate", ""),
		ev(api.TokenEventEventRefused, "/verify", "origin_not_allowed"),
		ev(api.TokenEventEventUsed, "/verify", ""),
		ev(api.TokenEventEventRefused, "/verify/batch", "origin_not_allowed"))
}

// A refresh says, in each token's history, which token it came from or
// went to; the old one presented again is a reuse.
func TestTokenHistoryOfARefresh(t *testing.T) {
	h := newHarness(t, nil)
	res := h.do(t, "POST", "/generate", `{"a":1}`, jsonCT, "x-api-key: "+partnerKey)
	old, oldID := res.json(t)["token"].(string), res.json(t)["token_id"].(string)
	res = h.do(t, "POST", "/refresh", "", "x-api-token: "+old)
	if res.status != 200 {
		t.Fatal(res.status)
	}
	newID := res.json(t)["token_id"].(string)
	wantError(t, h.do(t, "POST", "/refresh", "", "x-api-token: "+old), 403, "token_revoked")
	wantError(t, h.verify(t, old), 403, "token_revoked")

	info := h.lookup(t, oldID, partnerKey)
	wantEvents(t, info,
		ev(api.TokenEventEventMinted, "/generate", ""),
		ev(api.TokenEventEventRefreshed, "/refresh", ""),
		ev(api.TokenEventEventReused, "/refresh", "token_revoked"),
		ev(api.TokenEventEventReused, "/verify", "token_revoked"))
	if got := (*info.History)[1].NewTokenId; got == nil || *got != newID {
		t.Errorf("refreshed to %v, want %s", got, newID)
	}
	fresh := h.lookup(t, newID, partnerKey)
	wantEvents(t, fresh, ev(api.TokenEventEventMinted, "/refresh", ""))
	if got := (*fresh.History)[0].OldTokenId; got == nil || *got != oldID {
		t.Errorf("minted from %v, want %s", got, oldID)
	}
}

// With TOKENSVC_TOKEN_HISTORY=off tokens are minted without one, and a
// lookup shows none.
func TestNoTokenHistory(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.NoTokenHistory = true })
	token := h.mint(t, "", `{"a":1}`)
	h.verify(t, token)
	if info := h.lookup(t, tokenID(token).String(), partnerKey); info.History != nil {
		t.Fatalf("a history: %+v", *info.History)
	}
}
