package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/audit"
)

// auditLines runs `tokensvc audit args...` against the instance's Redis
// and prefix, and returns the events it printed.
func auditLines(t *testing.T, e env, args ...string) []audit.Event {
	t.Helper()
	var out, errs bytes.Buffer
	if err := run(context.Background(), append([]string{"audit"}, args...), e.get, nil, &out, &errs, nil); err != nil {
		t.Fatalf("tokensvc audit %s: %v\n%s", strings.Join(args, " "), err, errs.String())
	}
	return decodeEvents(t, out.String())
}

func decodeEvents(t *testing.T, text string) []audit.Event {
	t.Helper()
	var evs []audit.Event
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if l == "" {
			continue
		}
		var e audit.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Kind != "audit" {
			t.Fatalf("not an audit line: %v: %s", err, l)
		}
		evs = append(evs, e)
	}
	return evs
}

// Every kind of event, produced end to end on Redis and read back with
// `tokensvc audit`, its filters and --follow. A used-up uses=1 token
// presented again is a reuse event, in tokensvc_reuse_total and in the
// token's history.
func TestAuditTrailEndToEnd(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix()
	migrateRedis(t, prefix)
	keyFile := filepath.Join(t.TempDir(), "keys.yaml")
	writeKeys := func(keys string) {
		if err := os.WriteFile(keyFile, []byte(keys), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKeys("- id: acme\n  server_secret: acme-secret-1\n- id: leaving\n  server_secret: leaving-secret-1\n")
	e := env{
		"TOKENSVC_REDIS_URL": redisURL, "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_API_KEYS": "file://" + keyFile,
		"TOKENSVC_ADMIN_TOKEN": adminToken, "TOKENSVC_AUDIT": "redis", "TOKENSVC_AUDIT_REQUIRED": "true",
		"TOKENSVC_VERIFY_FAILURE_RATE": "5/m", "TOKENSVC_MAX_BATCH": "5", "TOKENSVC_GENERATE_RATE": "50/m",
	}
	in := start(t, e)
	ctx := context.Background()
	admin := withHeader("X-Admin-Token", adminToken)
	acme := withHeader("x-api-key", "acme-secret-1")

	single := in.mint(t, "acme-secret-1", "uses=1", `{"auth":"bundle-secret-9"}`)
	if code, _ := in.verifyCode(t, single.Token.String()); code != 200 {
		t.Fatalf("first use: %d", code)
	}
	if code, body := in.verifyCode(t, single.Token.String()); code != 403 || body != "token_used" {
		t.Fatalf("second use: %d %s", code, body)
	}
	plain := in.mint(t, "acme-secret-1", "", `{"a":1}`)
	if res, err := in.client.GetTokenWithResponse(ctx, plain.TokenId, acme); err != nil || res.JSON200 == nil {
		t.Fatalf("lookup: %v %d", err, res.StatusCode())
	}
	ref, err := in.client.RefreshWithResponse(ctx, withHeader("x-api-token", plain.Token.String()))
	if err != nil || ref.JSON200 == nil {
		t.Fatalf("refresh: %v %d %s", err, ref.StatusCode(), ref.Body)
	}
	if res, _ := in.client.RevokeTokenWithResponse(ctx, ref.JSON200.TokenId, acme); res.StatusCode() != 204 {
		t.Fatalf("revoke: %d", res.StatusCode())
	}
	other := in.mint(t, "acme-secret-1", "", `{"a":2}`)
	if res, _ := in.client.AdminRevokeTokenWithResponse(ctx, other.TokenId, admin); res.StatusCode() != 204 {
		t.Fatalf("admin revoke: %d", res.StatusCode())
	}
	if res, _ := in.client.AdminRevokeKeyTokensWithResponse(ctx, "acme", admin); res.StatusCode() != 200 {
		t.Fatalf("admin revoke-tokens: %d", res.StatusCode())
	}
	if res, _ := in.client.AdminListKeysWithResponse(ctx, admin); res.StatusCode() != 200 {
		t.Fatalf("admin keys: %d", res.StatusCode())
	}
	writeKeys("- id: acme\n  server_secret: acme-secret-1\n")
	if res, _ := in.client.AdminReloadWithResponse(ctx, admin); res.StatusCode() != 200 {
		t.Fatalf("admin reload: %d %s", res.StatusCode(), res.Body)
	}
	// The reuse in the metric and in the token's history.
	if m := get(t, in.base+"/metrics"); !strings.Contains(m, `tokensvc_reuse_total{reason="token_used"} 1`) {
		t.Errorf("tokensvc_reuse_total:\n%s", grepLines(m, "tokensvc_reuse_total"))
	}
	info, err := in.client.GetTokenWithResponse(ctx, single.TokenId, acme)
	if err != nil || info.JSON200 == nil || info.JSON200.History == nil {
		t.Fatalf("lookup of the used token: %v %d %s", err, info.StatusCode(), info.Body)
	}
	var hist []string
	for _, h := range *info.JSON200.History {
		s := string(h.Event)
		if h.Error != nil {
			s += ":" + *h.Error
		}
		hist = append(hist, s)
	}
	if want := "minted used reused:token_used"; strings.Join(hist, " ") != want {
		t.Errorf("history of the used token: %v, want %s", hist, want)
	}

	// --follow prints what comes next, until interrupted.
	fctx, cancel := context.WithCancel(ctx)
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(fctx, []string{"audit", "--follow", "--event", "mint", "--since", "1m"}, e.get, nil, out, io.Discard, nil)
	}()
	late := in.mint(t, "acme-secret-1", "", `{"late":true}`)
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(out.String(), late.TokenId); {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("--follow did not print the new mint; printed:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("--follow ended with %v", err)
	}
	for _, ev := range decodeEvents(t, out.String()) {
		if ev.Event != audit.Mint {
			t.Errorf("--follow --event mint printed %+v", ev)
		}
	}

	// The brute-force guard: a few guesses, then blocks.
	blocked := false
	for i := range 8 {
		code, _ := in.verifyCode(t, fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
		blocked = blocked || code == 429
	}
	if !blocked {
		t.Fatal("the guard never answered 429")
	}

	all := auditLines(t, e)
	kinds := map[audit.Kind]int{}
	for _, ev := range all {
		kinds[ev.Event]++
		if ev.RequestID == "" && ev.Event != audit.KeyReload && ev.Event != audit.Revoke {
			t.Errorf("an event of a request without its request id: %+v", ev)
		}
	}
	for _, k := range audit.Kinds() {
		if kinds[k] == 0 {
			t.Errorf("no %s event in the trail; got %v", k, kinds)
		}
	}
	t.Logf("%d events: %v", len(all), kinds)

	reuses := auditLines(t, e, "--event", "reuse")
	if len(reuses) != 1 || reuses[0].TokenID != single.TokenId || !reuses[0].SuspectedTheft || reuses[0].Client == "" || reuses[0].KeyID != "acme" {
		t.Fatalf("reuse events: %+v", reuses)
	}
	byToken := auditLines(t, e, "--token-id", plain.TokenId)
	var seen []string
	for _, ev := range byToken {
		seen = append(seen, string(ev.Event)+":"+ev.Outcome)
	}
	if want := "mint:ok lookup:ok refresh:ok"; strings.Join(seen, " ") != want {
		t.Errorf("--token-id %s: %v, want %s", plain.TokenId, seen, want)
	}
	for _, ev := range auditLines(t, e, "--key", "leaving", "--event", "key_reload,revoke") {
		if ev.Event == audit.Revoke && (ev.By != audit.ByKeyRemoval || ev.KeyID != "leaving") {
			t.Errorf("--key leaving: %+v", ev)
		}
	}
	if removed := auditLines(t, e, "--event", "key_reload"); len(removed) != 1 || fmt.Sprint(removed[0].Removed) != "[leaving]" {
		t.Errorf("key_reload events: %+v", removed)
	}

}

// TOKENSVC_AUDIT_REQUIRED=true fails closed: with the sink broken (a full
// disk, /dev/full; a Redis user that may not write streams), requests are
// 503 audit_unavailable, and the failures are counted. Not required, they
// are answered and the failures counted and logged.
func TestAuditRequiredFailsClosed(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	prefix := freshPrefix()
	migrateRedis(t, prefix)
	// A Redis user that may do all tokensvc does but XADD.
	noStreams := aclUser(t, prefix, "-xadd")
	for _, tc := range []struct {
		name string
		env  env
	}{
		{"FullDisk", env{"TOKENSVC_AUDIT": "/dev/full"}},
		{"RedisRefusesTheStream", env{"TOKENSVC_REDIS_URL": noStreams, "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_AUDIT": "redis"}},
	} {
		for _, required := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/required=%v", tc.name, required), func(t *testing.T) {
				e := env{"TOKENSVC_API_KEYS": "partner-a", "TOKENSVC_AUDIT_REQUIRED": fmt.Sprint(required)}
				for k, v := range tc.env {
					e[k] = v
				}
				in := start(t, e)
				res, err := in.client.GenerateWithBodyWithResponse(context.Background(), nil, "application/json", strings.NewReader(`{"a":1}`), withHeader("x-api-key", "partner-a"))
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case required && (res.JSON503 == nil || res.JSON503.Error != api.ErrorErrorAuditUnavailable):
					t.Fatalf("generate with a broken required trail: %d %s, want 503 audit_unavailable", res.StatusCode(), res.Body)
				case !required && res.JSON200 == nil:
					t.Fatalf("generate with a broken trail not required: %d %s, want 200", res.StatusCode(), res.Body)
				}
				if code, _ := in.verifyCode(t, "00000000-0000-4000-8000-000000000000"); required && code != 503 {
					t.Errorf("a refusal with a broken required trail: %d, want 503", code)
				}
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					m := get(t, in.base+"/metrics")
					if strings.Contains(m, "tokensvc_audit_write_failures_total 2") {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("failures not counted:\n%s", grepLines(m, "tokensvc_audit"))
					}
				}
				if !strings.Contains(in.stdout.String(), "audit events could not be recorded") {
					t.Errorf("the failure is not logged:\n%s", in.stdout)
				}
			})
		}
	}
}

// The stdout sink writes audit lines next to the access log, told apart
// by "kind":"audit"; the file sink appends them to the file.
func TestAuditStdoutAndFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	for _, sink := range []string{"stdout", path} {
		in := start(t, env{"TOKENSVC_API_KEYS": "partner-a", "TOKENSVC_AUDIT": sink})
		tok := in.mint(t, "partner-a", "", `{"a":1}`)
		in.verifyCode(t, tok.Token.String())
		if err := in.stop(); err != nil { // flushes the queue
			t.Fatal(err)
		}
		text := in.stdout.String()
		if sink == path {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			text = string(b)
			if strings.Contains(in.stdout.String(), `"kind":"audit"`) {
				t.Error("audit lines on stdout with the file sink")
			}
		}
		var trail []string
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, `"kind":"audit"`) {
				trail = append(trail, l)
			}
		}
		evs := decodeEvents(t, strings.Join(trail, "\n"))
		if len(evs) != 2 || evs[0].Event != audit.Mint || evs[1].Event != audit.Use || evs[1].TokenID != tok.TokenId {
			t.Errorf("%s: events %+v", sink, evs)
		}
	}
}
