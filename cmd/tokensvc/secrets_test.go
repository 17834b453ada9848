package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/api"
)

// Every endpoint is driven with known secrets: partner keys, the admin
// token, the idempotency secret and key, tokens, and secret values in
// bundles. None of them may appear in the logs, or in clear in any Redis
// key or value.
func TestNoSecretInLogsOrRedis(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix()
	migrateRedis(t, prefix)
	const (
		partnerKey = "pk-live-7d1e0c2b9a8f4e3d"
		clientKey  = "ck-live-5a4b3c2d1e0f9a8b"
		admin      = "admin-token-3f2e1d0c9b8a7f6e"
		idemSecret = "idem-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
		idemKey    = "order-9a8b7c6d5e4f"
		bundleKey  = "bundle-api-key-1a2b3c4d5e6f"
		privateVal = "private-server-2b3c4d5e6f7a"
		gwSecret   = "gateway-secret-8c7b6a5f4e3d2c1b"
	)
	keys := fmt.Sprintf("- id: acme\n  server_secret: %s\n  client_secret: %s\n  origins: [\"*.acme.test\"]\n", partnerKey, clientKey)
	in := start(t, env{
		"TOKENSVC_REDIS_URL": redisURL, "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_API_KEYS": keys,
		"TOKENSVC_ADMIN_TOKEN": admin, "TOKENSVC_IDEMPOTENCY_SECRET": idemSecret,
		"TOKENSVC_FORWARD_FIELDS": "auth,server", "TOKENSVC_FORWARD_COOKIE": "sess", "TOKENSVC_FORWARD_SECRET": gwSecret,
		"TOKENSVC_LOG_LEVEL": "debug", "TOKENSVC_AUDIT": "redis",
	})
	ctx := context.Background()
	bundle := fmt.Sprintf(`{"auth":%q,"server":%q,"userId":"u-1"}`, bundleKey, privateVal)
	secrets := []string{partnerKey, clientKey, admin, idemSecret, idemKey, bundleKey, privateVal, gwSecret}
	var tokens []string
	remember := func(g *api.GeneratedToken) string {
		tokens = append(tokens, g.Token.String(), strings.ToUpper(g.Token.String()))
		return g.Token.String()
	}

	t1 := remember(in.mint(t, partnerKey, "private=server", bundle))
	t2 := remember(in.mint(t, partnerKey, "uses=2&idle_ttl=60", bundle, withHeader("Idempotency-Key", idemKey)))
	t3 := remember(in.mint(t, clientKey, "", bundle, withHeader("Origin", "https://app.acme.test")))
	form, _ := in.client.GenerateWithBodyWithResponse(ctx, &api.GenerateParams{}, "application/x-www-form-urlencoded",
		strings.NewReader("auth="+bundleKey+"&server="+privateVal), withHeader("x-api-key", partnerKey))
	t4 := remember(form.JSON200)

	call := func(method, path, body string, headers ...string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, in.base+path, strings.NewReader(body))
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	call("GET", "/verify", "", "x-api-token", t1)
	call("GET", "/verify", "", "Authorization", "Bearer "+t1, "x-api-key", partnerKey)
	call("GET", "/verify", "", "x-api-token", t3, "Origin", "https://app.acme.test")
	call("GET", "/verify", "", "x-api-token", t3, "Origin", "https://evil.test")
	call("POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q,%q,"nope"]}`, t1, t2), "Content-Type", "application/json", "x-api-key", partnerKey)
	call("GET", "/auth", "", "Cookie", "sess="+t2)
	call("GET", "/auth/x", "", "X-Original-URI", "/e?token="+t1)
	call("GET", "/auth", "", "x-api-token", t1, "X-Gateway-Secret", gwSecret)
	call("GET", "/auth", "", "x-api-token", t1, "X-Gateway-Secret", gwSecret+"x")
	call("GET", "/tokens/"+form.JSON200.TokenId, "", "x-api-key", partnerKey)
	call("POST", "/generate", bundle, "Content-Type", "application/json", "x-api-key", partnerKey+"x")
	call("GET", "/verify", "", "x-api-token", strings.Replace(t1, "a", "b", 1))
	call("GET", "/admin/keys", "", "X-Admin-Token", admin)
	call("GET", "/admin/keys", "", "X-Admin-Token", admin+"x")
	call("POST", "/admin/reload", "", "X-Admin-Token", admin)
	call("DELETE", "/tokens/"+form.JSON200.TokenId, "", "x-api-key", partnerKey)
	call("POST", "/admin/keys/acme/revoke-tokens", "", "X-Admin-Token", admin)
	ref, _ := in.client.RefreshWithResponse(ctx, withHeader("x-api-token", t4))
	if ref.JSON200 != nil {
		remember(ref.JSON200)
	}
	fresh := remember(in.mint(t, partnerKey, "", bundle))
	r2, _ := in.client.RefreshWithResponse(ctx, withHeader("x-api-token", fresh))
	if r2.JSON200 == nil {
		t.Fatalf("refresh: %d %s", r2.StatusCode(), r2.Body)
	}
	remember(r2.JSON200)
	call("DELETE", "/admin/tokens/"+r2.JSON200.TokenId, "", "X-Admin-Token", admin)
	secrets = append(secrets, tokens...)

	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	logs := in.stdout.String() + in.stderr.String()
	if !strings.Contains(logs, `"route":"/verify"`) {
		t.Fatalf("the log is missing requests:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret is in the logs: %q", s)
		}
	}

	opts, _ := redis.ParseURL(redisURL)
	c := redis.NewClient(opts)
	defer c.Close()
	var keysSeen, valuesSeen int
	auditSeen := false
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		keysSeen++
		// Read values as they are, not DUMPed: DUMP may compress them,
		// which would hide a secret from the search.
		var dump string
		switch typ, _ := c.Type(ctx, k).Result(); typ {
		case "string":
			dump = c.Get(ctx, k).Val()
		case "hash":
			dump = fmt.Sprint(c.HGetAll(ctx, k).Val())
		case "list": // a token's history
			dump = fmt.Sprint(c.LRange(ctx, k, 0, -1).Val())
		case "stream": // the audit trail
			dump = fmt.Sprint(c.XRange(ctx, k, "-", "+").Val())
			auditSeen = true
		case "set":
			dump = fmt.Sprint(c.SMembers(ctx, k).Val())
		default:
			t.Fatalf("key %q has type %s, which this test does not read", k, typ)
		}
		valuesSeen++
		for _, s := range secrets {
			if strings.Contains(k, s) || strings.Contains(dump, s) {
				t.Errorf("Redis key %q holds a secret in clear: %q", k, s)
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if keysSeen < len(tokens)/2 {
		t.Fatalf("only %d keys under the prefix: the scan looked at the wrong place", keysSeen)
	}
	if !auditSeen {
		t.Fatal("no audit stream under the prefix")
	}
	// And the trail as `tokensvc audit` prints it.
	var trail bytes.Buffer
	if err := run(ctx, []string{"audit"}, env{"TOKENSVC_REDIS_URL": redisURL, "TOKENSVC_REDIS_PREFIX": prefix}.get, nil, &trail, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(trail.String(), `"event":"reuse"`) || !strings.Contains(trail.String(), `"event":"admin"`) {
		t.Fatalf("the trail is missing events:\n%s", trail.String())
	}
	for _, s := range secrets {
		if strings.Contains(trail.String(), s) {
			t.Errorf("a secret is in the audit trail: %q", s)
		}
	}
	t.Logf("checked %d secrets against %d log bytes and %d Redis keys", len(secrets), len(logs), valuesSeen)
}
