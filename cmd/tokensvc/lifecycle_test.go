package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store/storetest"
)

const adminToken = "admin-token-for-tests-0123456789"

// pair starts two instances sharing one Redis prefix, as a deployment would.
func pair(t *testing.T, extra env) (*instance, *instance) {
	t.Helper()
	prefix := freshPrefix()
	migrateRedis(t, prefix)
	mk := func() *instance {
		e := env{
			"TOKENSVC_REDIS_URL": redisURL, "TOKENSVC_REDIS_PREFIX": prefix,
			"TOKENSVC_API_KEYS": "partner-a,partner-b", "TOKENSVC_ADMIN_TOKEN": adminToken,
			"TOKENSVC_IDEMPOTENCY_SECRET": "shared-secret-of-both-instances-0123456789",
		}
		for k, v := range extra {
			e[k] = v
		}
		return start(t, e)
	}
	return mk(), mk()
}

func (in *instance) mint(t *testing.T, key, query, bundle string, edit ...api.RequestEditorFn) *api.GeneratedToken {
	t.Helper()
	params := &api.GenerateParams{}
	if query != "" {
		// The generated client sets typed parameters; for brevity tests
		// send raw query strings through a request editor.
		edit = append(edit, func(_ context.Context, r *http.Request) error { r.URL.RawQuery = query; return nil })
	}
	res, err := in.client.GenerateWithBodyWithResponse(context.Background(), params, "application/json", strings.NewReader(bundle),
		append([]api.RequestEditorFn{withHeader("x-api-key", key)}, edit...)...)
	if err != nil || res.JSON200 == nil {
		t.Fatalf("generate: %v %d %s", err, res.StatusCode(), res.Body)
	}
	return res.JSON200
}

func (in *instance) verifyCode(t *testing.T, token string) (int, string) {
	t.Helper()
	res, err := in.client.VerifyWithResponse(context.Background(), withHeader("x-api-token", token))
	if err != nil {
		t.Fatal(err)
	}
	if res.JSON403 != nil {
		return res.StatusCode(), string(res.JSON403.Error)
	}
	return res.StatusCode(), string(res.Body)
}

// Revocations made through one instance hold at once on the other.
func TestRevocationSharedByInstances(t *testing.T) {
	t.Parallel()
	a, b := pair(t, nil)
	ctx := context.Background()
	admin := withHeader("X-Admin-Token", adminToken)

	one := a.mint(t, "partner-a", "", `{"n":1}`)
	two := a.mint(t, "partner-a", "", `{"n":2}`)
	theirs := a.mint(t, "partner-b", "", `{"n":3}`)
	if code, _ := b.verifyCode(t, one.Token.String()); code != 200 {
		t.Fatalf("the second instance does not see the token: %d", code)
	}

	res, err := a.client.RevokeTokenWithResponse(ctx, one.TokenId, withHeader("x-api-key", "partner-a"))
	if err != nil || res.StatusCode() != 204 {
		t.Fatalf("revoke: %v %d %s", err, res.StatusCode(), res.Body)
	}
	if code, body := b.verifyCode(t, one.Token.String()); code != 403 || body != "token_revoked" {
		t.Fatalf("after revoke on a, b answers %d %s", code, body)
	}

	info, err := a.client.GetTokenWithResponse(ctx, two.TokenId, withHeader("x-api-key", "partner-a"))
	if err != nil || info.JSON200 == nil {
		t.Fatalf("lookup: %v %d", err, info.StatusCode())
	}
	rk, err := b.client.AdminRevokeKeyTokensWithResponse(ctx, info.JSON200.KeyId, admin)
	if err != nil || rk.JSON200 == nil {
		t.Fatalf("revoke-tokens on b: %v %d %s", err, rk.StatusCode(), rk.Body)
	}
	if code, body := a.verifyCode(t, two.Token.String()); code != 403 || body != "token_revoked" {
		t.Fatalf("after revoke-tokens on b, a answers %d %s", code, body)
	}
	if code, _ := a.verifyCode(t, theirs.Token.String()); code != 200 {
		t.Fatalf("another partner's token died: %d", code)
	}
	after := a.mint(t, "partner-a", "", `{"n":4}`)
	if code, _ := b.verifyCode(t, after.Token.String()); code != 200 {
		t.Fatalf("a token minted after revoke-tokens: %d", code)
	}
}

// 50 concurrent verifications of a single-use token, spread over two
// instances on one Redis: exactly one succeeds.
func TestSingleUseOverHTTP(t *testing.T) {
	t.Parallel()
	a, b := pair(t, nil)
	tok := a.mint(t, "partner-a", "uses=1", `{"once":true}`).Token.String()
	var ok, used atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		in := a
		if i%2 == 1 {
			in = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, body := in.verifyCode(t, tok)
			switch {
			case code == 200:
				ok.Add(1)
			case code == 403 && body == "token_used":
				used.Add(1)
			default:
				t.Errorf("unexpected %d %s", code, body)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || used.Load() != 49 {
		t.Fatalf("%d successes, %d token_used; want 1 and 49", ok.Load(), used.Load())
	}
}

// Idempotent minting holds across instances sharing the secret, and batch
// verification and refresh work on Redis.
func TestIdempotencyBatchRefreshOnRedis(t *testing.T) {
	t.Parallel()
	a, b := pair(t, nil)
	idem := withHeader("Idempotency-Key", "order-42")
	first := a.mint(t, "partner-a", "", `{"order":42}`, idem)
	again := b.mint(t, "partner-a", "", `{"order":42}`, idem)
	if first.Token != again.Token {
		t.Fatalf("a retry on the other instance minted another token")
	}
	fresh := a.mint(t, "partner-a", "private=auth", `{"auth":"k","f":1}`)
	ref, err := b.client.RefreshWithResponse(context.Background(), withHeader("x-api-token", fresh.Token.String()))
	if err != nil || ref.JSON200 == nil {
		t.Fatalf("refresh: %v %d %s", err, ref.StatusCode(), ref.Body)
	}
	batch, err := a.client.VerifyBatchWithResponse(context.Background(), api.VerifyBatchJSONRequestBody{
		Tokens: []string{first.Token.String(), fresh.Token.String(), ref.JSON200.Token.String()},
	})
	if err != nil || batch.JSON200 == nil {
		t.Fatalf("batch: %v %d %s", err, batch.StatusCode(), batch.Body)
	}
	r := batch.JSON200.Results
	if !r[0].Valid || r[1].Valid || *r[1].Error != "token_revoked" || !r[2].Valid || string(*r[2].Bundle) != `{"f":1}` {
		t.Fatalf("batch results: %s", batch.Body)
	}
}

// A key file edited on disk takes effect on reload, without a restart; a
// broken edit keeps the last good keys.
func TestKeyFileReload(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys.json")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"tokens":[{"id":"p1","server_secret":"old-secret"}]}`)
	in := start(t, env{"TOKENSVC_API_KEYS": "file://" + file, "TOKENSVC_ADMIN_TOKEN": adminToken, "TOKENSVC_API_KEYS_RELOAD_SEC": "3600"})
	ctx := context.Background()
	in.mint(t, "old-secret", "", `{}`)

	write(`{"tokens":[{"id":"p1","server_secret":"new-secret"}]}`)
	if res, err := in.client.AdminReloadWithResponse(ctx, withHeader("X-Admin-Token", adminToken)); err != nil || res.JSON200 == nil {
		t.Fatalf("reload: %v %d %s", err, res.StatusCode(), res.Body)
	}
	gen, _ := in.client.GenerateWithBodyWithResponse(ctx, &api.GenerateParams{}, "application/json", strings.NewReader(`{}`), withHeader("x-api-key", "old-secret"))
	if gen.StatusCode() != 403 {
		t.Fatalf("a removed key still mints: %d", gen.StatusCode())
	}
	in.mint(t, "new-secret", "", `{}`)

	write(`{"tokens":[{"id":"p1","server_secret":`)
	res, err := in.client.AdminReloadWithResponse(ctx, withHeader("X-Admin-Token", adminToken))
	if err != nil || res.StatusCode() != 502 {
		t.Fatalf("reload of a broken file: %v %d %s", err, res.StatusCode(), res.Body)
	}
	in.mint(t, "new-secret", "", `{}`)
	list, _ := in.client.AdminListKeysWithResponse(ctx, withHeader("X-Admin-Token", adminToken))
	if list.JSON200 == nil || list.JSON200.Source.LastError == nil || strings.Contains(string(list.Body), "new-secret") {
		t.Fatalf("admin view after a broken reload: %s", list.Body)
	}
}

// A partner key removed from a file key source takes its tokens with it:
// refused at once by the instance that reloaded, revoked in the shared
// store for the one that has not reloaded yet, and not brought back when
// the key returns.
func TestRemovedKeyTakesItsTokens(t *testing.T) {
	t.Parallel()
	storetest.NeedRedis(t, redisURL)
	file := filepath.Join(t.TempDir(), "keys.json")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	both := `[{"id":"stays","server_secret":"stays-secret"},{"id":"leaked","server_secret":"leaked-secret"}]`
	write(both)
	a, b := pair(t, env{"TOKENSVC_API_KEYS": "file://" + file, "TOKENSVC_ADMIN_TOKEN": adminToken,
		"TOKENSVC_API_KEYS_RELOAD_SEC": "3600", "TOKENSVC_FORWARD_FIELDS": "u"})
	token := a.mint(t, "leaked-secret", "ttl=86400", `{"u":"x"}`).Token.String()

	write(`[{"id":"stays","server_secret":"stays-secret"}]`)
	if res, err := a.client.AdminReloadWithResponse(context.Background(), withHeader("X-Admin-Token", adminToken)); err != nil || res.JSON200 == nil {
		t.Fatalf("reload: %v", err)
	}
	for _, in := range []*instance{a, b} { // b has not reloaded: the store refuses
		if code, e := in.verifyCode(t, token); code != 403 || e != "token_revoked" {
			t.Errorf("verify: %d %s", code, e)
		}
	}
	res, err := a.client.RefreshWithResponse(context.Background(), withHeader("x-api-token", token))
	if err != nil || res.StatusCode() != 403 || !strings.Contains(string(res.Body), "token_revoked") {
		t.Errorf("refresh: %v %d %s", err, res.StatusCode(), res.Body)
	}
	req, _ := http.NewRequest("GET", a.base+"/auth", nil)
	req.Header.Set("x-api-token", token)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 403 {
		t.Errorf("/auth: %v %v", err, r)
	} else {
		r.Body.Close()
	}

	write(both)
	if res, err := a.client.AdminReloadWithResponse(context.Background(), withHeader("X-Admin-Token", adminToken)); err != nil || res.JSON200 == nil {
		t.Fatalf("reload: %v", err)
	}
	if code, e := a.verifyCode(t, token); code != 403 || e != "token_revoked" {
		t.Errorf("verify after the key came back: %d %s", code, e)
	}
}

// Inline keys change with a restart: a key missing at one start-up has its
// tokens revoked, and they do not come back with a rotated secret.
func TestKeyRemovedAcrossRestarts(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix()
	migrateRedis(t, prefix)
	boot := func(keys string) *instance {
		return start(t, env{"TOKENSVC_REDIS_URL": storetest.NeedRedis(t, redisURL), "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_API_KEYS": keys})
	}
	in := boot(`[{"id":"acme","server_secret":"leaked-secret"}]`)
	token := in.mint(t, "leaked-secret", "", `{"who":"attacker"}`).Token.String()
	in.stop()
	in = boot(`[{"id":"other","server_secret":"other-secret"}]`)
	in.stop()
	in = boot(`[{"id":"acme","server_secret":"rotated-secret"},{"id":"other","server_secret":"other-secret"}]`)
	if code, e := in.verifyCode(t, token); code != 403 || e != "token_revoked" {
		t.Errorf("verify after the key came back: %d %s", code, e)
	}
}
