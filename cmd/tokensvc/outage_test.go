package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/store/storetest"
)

// Store outages under a running tokensvc (TOKENSVC_STORE_TIMEOUT=500ms):
// a hung Redis (SIGSTOP) and a crashed one (kill -9, then restarted on the
// same port with its AOF). During the outage /generate, /verify and
// /readyz answer 503 store_unavailable, never 403 or 500, and each
// answers (well within a 5 s client timeout; the latency is logged, not
// asserted). Afterwards the same process recovers by itself and a token
// minted before the outage still verifies.

const outageStoreTimeout = "500ms"

// recoveryBound is how long the service may take to serve again once
// Redis is back.
const recoveryBound = 15 * time.Second

func TestOutageRedisPaused(t *testing.T) {
	t.Parallel()
	rs := startRedis(t, false)
	in := startOnRedis(t, rs.URL(), env{"TOKENSVC_STORE_TIMEOUT": outageStoreTimeout})
	c := newLoadClient(t, in.base, "k")
	token, bundle := mintBefore(t, c)

	rs.Pause()
	t.Cleanup(rs.Resume) // a failed test must not leave a stopped process
	outageAnswers503(t, c, token, "paused")
	rs.Resume()
	resumed := time.Now()
	awaitRecovery(t, c, token, bundle, resumed, "paused Redis resumed")
}

func TestOutageRedisKilledAndRestarted(t *testing.T) {
	t.Parallel()
	rs := startRedis(t, true)
	in := startOnRedis(t, rs.URL(), env{"TOKENSVC_STORE_TIMEOUT": outageStoreTimeout})
	c := newLoadClient(t, in.base, "k")
	token, bundle := mintBefore(t, c)

	rs.Kill()
	outageAnswers503(t, c, token, "killed")
	rs.Restart(t)
	restarted := time.Now()
	awaitRecovery(t, c, token, bundle, restarted, "killed Redis restarted (AOF replayed)")
}

// mintBefore mints a token before the outage.
func mintBefore(t *testing.T, c *loadClient) (token, bundle string) {
	t.Helper()
	bundle = `{"userId":"before-the-outage","n":1}`
	r, token, err := c.generate(context.Background(), bundle)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("generate before the outage: %v %d %s", err, r.status, r.body)
	}
	return token, bundle
}

// outageAnswers503 checks each endpoint twice during the outage (the
// first call may meet pooled connections, the second new ones).
func outageAnswers503(t *testing.T, c *loadClient, token, what string) {
	t.Helper()
	calls := []struct {
		name string
		call func(ctx context.Context) (reply, error)
	}{
		{"generate", func(ctx context.Context) (reply, error) {
			r, _, err := c.generate(ctx, `{"userId":"during-the-outage"}`)
			return r, err
		}},
		{"verify", func(ctx context.Context) (reply, error) { return c.verify(ctx, token) }},
		{"readyz", c.readyz},
	}
	for round := range 2 {
		for _, call := range calls {
			r, took, err := timed(call.call)
			if err != nil {
				t.Fatalf("%s with Redis %s: no answer within %s: %v", call.name, what, requestTimeout, err)
			}
			if r.status != http.StatusServiceUnavailable || r.code != "store_unavailable" {
				t.Fatalf("%s with Redis %s: %d %s, want 503 store_unavailable", call.name, what, r.status, r.body)
			}
			t.Logf("Redis %s: %s answered 503 store_unavailable in %v (round %d)", what, call.name, took.Round(time.Millisecond), round+1)
		}
	}
}

// awaitRecovery polls /readyz until 200, then checks that the token from
// before the outage verifies and that new tokens are minted.
func awaitRecovery(t *testing.T, c *loadClient, token, bundle string, since time.Time, what string) {
	t.Helper()
	deadline := since.Add(recoveryBound)
	for {
		r, _, err := timed(c.readyz)
		if err == nil && r.status == http.StatusOK {
			break
		}
		if err == nil && r.status != http.StatusServiceUnavailable {
			t.Fatalf("readyz while recovering: %d %s, want 503 or 200", r.status, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready %s after the %s: %v %d %s", recoveryBound, what, err, r.status, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s: /readyz 200 again after %v, with no restart of tokensvc", what, time.Since(since).Round(time.Millisecond))
	ctx := context.Background()
	r, err := c.verify(ctx, token)
	if err != nil || r.status != http.StatusOK || string(r.body) != bundle {
		t.Fatalf("verify of the token minted before the outage: %v %d %s", err, r.status, r.body)
	}
	if r, _, err := c.generate(ctx, `{"userId":"after-the-outage"}`); err != nil || r.status != http.StatusOK {
		t.Fatalf("generate after recovery: %v %d %s", err, r.status, r.body)
	}
}

// A Redis that is full (maxmemory reached, noeviction, as compose.yaml
// configures it) refuses writes: minting is 503 store_full, counted in a
// metric and logged at error level once per burst, while plain tokens
// still verify.
func TestRedisFull(t *testing.T) {
	t.Parallel()
	rs := storetest.StartServer(t, storetest.ServerOptions{Args: []string{"--maxmemory", "2mb", "--maxmemory-policy", "noeviction"}})
	in := startOnRedis(t, rs.URL(), nil)
	c := newLoadClient(t, in.base, "k")
	token, bundle := mintBefore(t, c)
	big := `{"pad":"` + strings.Repeat("x", 8000) + `"}`
	full := 0
	for i := 0; i < 2000 && full < 20; i++ {
		r, _, err := c.generate(context.Background(), big)
		switch {
		case err != nil:
			t.Fatal(err)
		case r.status == http.StatusOK:
		case r.status == http.StatusServiceUnavailable && strings.Contains(string(r.body), `"store_full"`):
			full++
		default:
			t.Fatalf("mint into a full Redis: %d %s", r.status, r.body)
		}
	}
	if full == 0 {
		t.Fatal("Redis never filled up")
	}
	if r, err := c.verify(context.Background(), token); err != nil || r.status != http.StatusOK || string(r.body) != bundle {
		t.Fatalf("verify while full: %v %d %s", err, r.status, r.body)
	}
	metrics := get(t, in.base+"/metrics")
	if !strings.Contains(metrics, `tokensvc_store_errors_total{error="full",operation="put"}`) {
		t.Errorf("no store_full count in /metrics:\n%s", grepLines(metrics, "tokensvc_store_errors_total"))
	}
	if n := strings.Count(in.stdout.String()+in.stderr.String(), `"msg":"store full"`); n != 1 {
		t.Errorf("logged %q %d times, want once per burst", "store full", n)
	}
}

// get fetches url and returns its body.
func get(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// grepLines is the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
