package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/store/storetest"
)

// Helpers of the reliability tests (shutdown, outage, durability): a
// plain HTTP client for load, where the spec-checking client of start
// would be the bottleneck, and a service started on a storetest Redis.

// requestTimeout bounds every request of these tests. It is generous on
// purpose: the tests assert that a request completes, never how fast.
const requestTimeout = 5 * time.Second

// loadClient calls one running tokensvc.
type loadClient struct {
	hc   *http.Client
	base string
	key  string // partner key for /generate
}

func newLoadClient(t *testing.T, base, key string) *loadClient {
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &loadClient{hc: &http.Client{Transport: tr, Timeout: requestTimeout}, base: base, key: key}
}

// reply is an HTTP answer: its status, body and error code (for errors).
type reply struct {
	status int
	body   []byte
	code   string
}

func (c *loadClient) do(ctx context.Context, method, path, body string, header ...string) (reply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, body: b}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		r.code = e.Error
	}
	return r, nil
}

// generate mints a token for bundle; token is set on a 200.
func (c *loadClient) generate(ctx context.Context, bundle string) (r reply, token string, err error) {
	r, err = c.do(ctx, http.MethodPost, "/generate", bundle, "x-api-key", c.key, "Content-Type", "application/json")
	if err == nil && r.status == http.StatusOK {
		var g struct{ Token string }
		if json.Unmarshal(r.body, &g) != nil || g.Token == "" {
			return r, "", errors.New("generate answered 200 without a token: " + string(r.body))
		}
		token = g.Token
	}
	return r, token, err
}

func (c *loadClient) verify(ctx context.Context, token string) (reply, error) {
	return c.do(ctx, http.MethodGet, "/verify", "", "x-api-token", token)
}

func (c *loadClient) readyz(ctx context.Context) (reply, error) {
	return c.do(ctx, http.MethodGet, "/readyz", "")
}

// timed runs call with a fresh requestTimeout and says how long it took.
func timed[T any](call func(ctx context.Context) (T, error)) (T, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	t0 := time.Now()
	r, err := call(ctx)
	return r, time.Since(t0), err
}

// refused reports whether err is a connection refused: the listener is
// closed, so the server never accepted the request.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// migrateURL runs `tokensvc migrate` on the Redis at url under prefix.
func migrateURL(t *testing.T, url, prefix string) {
	t.Helper()
	var out bytes.Buffer
	e := env{"TOKENSVC_REDIS_URL": url, "TOKENSVC_REDIS_PREFIX": prefix}
	if err := run(context.Background(), []string{"migrate"}, e.get, nil, &out, &out, nil); err != nil {
		t.Fatalf("migrate %s: %v\n%s", url, err, out.String())
	}
}

// startOnRedis migrates the Redis at url under a fresh prefix and starts
// tokensvc on it with partner key "k" and more settings from extra.
func startOnRedis(t *testing.T, url string, extra env) *instance {
	t.Helper()
	prefix := freshPrefix()
	migrateURL(t, url, prefix)
	// Load tests verify many lost or unknown tokens from one address on
	// purpose: the brute-force guard would answer them 429.
	e := env{"TOKENSVC_REDIS_URL": url, "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_API_KEYS": "k", "TOKENSVC_VERIFY_FAILURE_RATE": "off"}
	for k, v := range extra {
		e[k] = v
	}
	return start(t, e)
}

// startRedis starts a local redis-server for one test (see storetest).
func startRedis(t *testing.T, aof bool) *storetest.Server {
	t.Helper()
	return storetest.StartServer(t, storetest.ServerOptions{AppendOnly: aof})
}
