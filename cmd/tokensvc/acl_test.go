package main

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store/storetest"
)

// aclUser creates a Redis user that may touch only keys under prefix and
// no dangerous command (the ACL an operator would give tokensvc), with
// more ACL rules if given, and returns the URL of the package's Redis as
// that user.
func aclUser(t *testing.T, prefix string, rules ...string) string {
	t.Helper()
	opts, err := redis.ParseURL(storetest.NeedRedis(t, redisURL))
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(opts)
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	user, password := "acl-"+strings.TrimSuffix(prefix, ":"), "pw-"+prefix
	args := append([]any{"ACL", "SETUSER", user, "reset", "on", ">" + password, "~" + prefix + "*", "+@all", "-@dangerous"}, anys(rules)...)
	if err := admin.Do(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	// The user really is limited.
	lopts, _ := redis.ParseURL(u.String())
	limited := redis.NewClient(lopts)
	defer limited.Close()
	if err := limited.Set(ctx, "outside:"+prefix, "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("SET outside the prefix as %s: %v, want NOPERM", user, err)
	}
	return u.String()
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// The whole service runs as a Redis user limited to ~<prefix>* (and no
// dangerous command): migrate, mint, verify, a rate-limited mint, the
// brute-force guard's 429, revoking a key's tokens, the required audit
// stream. Any key outside the prefix would be NOPERM, a 503, or a guard
// that never answers 429.
func TestRedisUserLimitedToThePrefix(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix()
	e := env{"TOKENSVC_REDIS_URL": aclUser(t, prefix), "TOKENSVC_REDIS_PREFIX": prefix}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"migrate"}, e.get, nil, &out, io.Discard, nil); err != nil {
		t.Fatalf("migrate as the limited user: %v", err)
	}
	e["TOKENSVC_API_KEYS"] = "partner-a"
	e["TOKENSVC_ADMIN_TOKEN"] = adminToken
	e["TOKENSVC_GENERATE_RATE"] = "2/m"
	e["TOKENSVC_VERIFY_FAILURE_RATE"] = "3/m"
	e["TOKENSVC_MAX_BATCH"] = "3" // the guard must allow a whole batch
	e["TOKENSVC_AUDIT"], e["TOKENSVC_AUDIT_REQUIRED"] = "redis", "true"
	in := start(t, e)
	ctx := context.Background()

	if res, err := in.client.ReadyzWithResponse(ctx); err != nil || res.StatusCode() != 200 {
		t.Fatalf("readyz: %v %d", err, res.StatusCode())
	}
	one := in.mint(t, "partner-a", "", `{"n":1}`)
	two := in.mint(t, "partner-a", "", `{"n":2}`)
	if code, body := in.verifyCode(t, one.Token.String()); code != 200 || body != `{"n":1}` {
		t.Fatalf("verify: %d %s", code, body)
	}
	res, err := in.client.GenerateWithBodyWithResponse(ctx, nil, "application/json", strings.NewReader(`{"n":3}`), withHeader("x-api-key", "partner-a"))
	if err != nil || res.StatusCode() != 429 || res.HTTPResponse.Header.Get("Retry-After") == "" {
		t.Fatalf("third mint at 2/m: %v %d %s, want 429 with Retry-After", err, res.StatusCode(), res.Body)
	}

	info, err := in.client.GetTokenWithResponse(ctx, two.TokenId, withHeader("x-api-key", "partner-a"))
	if err != nil || info.JSON200 == nil {
		t.Fatalf("lookup: %v %d %s", err, info.StatusCode(), info.Body)
	}
	rk, err := in.client.AdminRevokeKeyTokensWithResponse(ctx, info.JSON200.KeyId, withHeader("X-Admin-Token", adminToken))
	if err != nil || rk.JSON200 == nil {
		t.Fatalf("revoke-tokens: %v %d %s", err, rk.StatusCode(), rk.Body)
	}
	// The revoked token is the first failed check; two guesses make three.
	if code, body := in.verifyCode(t, two.Token.String()); code != 403 || body != "token_revoked" {
		t.Fatalf("after revoke-tokens: %d %s", code, body)
	}
	for i, guess := range []string{"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"} {
		if code, _ := in.verifyCode(t, guess); code != 403 {
			t.Fatalf("guess %d: %d, want 403", i, code)
		}
	}
	if code, _ := in.verifyCode(t, "00000000-0000-4000-8000-000000000003"); code != 429 {
		t.Fatalf("fourth failed check at 3/m: %d, want 429", code)
	}
	if strings.Contains(in.stdout.String(), "NOPERM") {
		t.Fatalf("the log has NOPERM:\n%s", in.stdout)
	}
}
