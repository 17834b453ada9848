package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/migrations"
	"github.com/tokensvc/tokensvc/server/spectest"
	"github.com/tokensvc/tokensvc/store/storetest"
)

var redisURL string

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" { // startProcess: this binary is tokensvc
		main()
		os.Exit(0)
	}
	os.Exit(storetest.Main(m, &redisURL))
}

// env is a getenv over a map.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// lockedBuffer is written by the server while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type instance struct {
	base   string
	client *api.ClientWithResponses
	stdout *lockedBuffer
	stderr *lockedBuffer
	stop   func() error // cancels run and returns its error
}

var prefixN atomic.Int64

func freshPrefix() string { return fmt.Sprintf("e2e%d:", prefixN.Add(1)) }

// start runs the real program on 127.0.0.1:0 and returns once it listens.
func start(t *testing.T, e env) *instance {
	t.Helper()
	e["TOKENSVC_ADDR"] = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, e.get, strings.NewReader(""), in.stdout, in.stderr, func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		in.base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("run returned before listening: %v\nstderr: %s\nstdout: %s", err, in.stderr, in.stdout)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("run did not listen within a minute")
	}
	var once sync.Once
	var runErr error
	in.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { in.stop() })
	hc := &http.Client{Transport: spectest.New(t).Transport(t, nil), Timeout: 10 * time.Second}
	c, err := api.NewClientWithResponses(in.base, api.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	in.client = c
	return in
}

func withHeader(name, value string) api.RequestEditorFn {
	return func(_ context.Context, r *http.Request) error { r.Header.Set(name, value); return nil }
}

func migrateRedis(t *testing.T, prefix string) {
	t.Helper()
	var out bytes.Buffer
	e := env{"TOKENSVC_REDIS_URL": storetest.NeedRedis(t, redisURL), "TOKENSVC_REDIS_PREFIX": prefix}
	if err := run(context.Background(), []string{"migrate"}, e.get, nil, &out, io.Discard, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("layout is %d", migrations.Layout)) {
		t.Fatalf("migrate said: %s", out.String())
	}
}

// The partner flow end to end on Redis, through the generated client.
func TestEndToEndRedis(t *testing.T) {
	t.Parallel()
	prefix := freshPrefix()
	migrateRedis(t, prefix)
	in := start(t, env{"TOKENSVC_REDIS_URL": redisURL, "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_API_KEYS": "partner-a,partner-b"})
	ctx := context.Background()

	bundle := []byte(`{"auth":"apiKey","file":"/drawings/1.dwg","userId":"u-42","server":"eu-1","n":9007199254740993}`)
	gen, err := in.client.GenerateWithBodyWithResponse(ctx, &api.GenerateParams{}, "application/json", bytes.NewReader(bundle), withHeader("x-api-key", "partner-b"))
	if err != nil || gen.JSON200 == nil {
		t.Fatalf("generate: %v %d %s", err, gen.StatusCode(), gen.Body)
	}
	token := gen.JSON200.Token.String()
	if gen.JSON200.ExpiresIn != 3600 || gen.JSON200.ExpirationTime-time.Now().Unix() > 3601 {
		t.Errorf("expiry: %+v", gen.JSON200)
	}
	ver, err := in.client.VerifyWithResponse(ctx, withHeader("x-api-token", token))
	if err != nil || ver.StatusCode() != 200 || string(ver.Body) != string(bundle) {
		t.Fatalf("verify: %v %d %s", err, ver.StatusCode(), ver.Body)
	}

	form := url.Values{"userId": {"u-7"}, "file": {"a b.dwg"}}.Encode()
	gen, err = in.client.GenerateWithBodyWithResponse(ctx, &api.GenerateParams{}, "application/x-www-form-urlencoded", strings.NewReader(form), withHeader("x-api-key", "partner-a"))
	if err != nil || gen.JSON200 == nil {
		t.Fatalf("generate form: %v %d %s", err, gen.StatusCode(), gen.Body)
	}
	ver, _ = in.client.VerifyWithResponse(ctx, withHeader("Authorization", "Bearer "+gen.JSON200.Token.String()))
	if string(ver.Body) != `{"file":"a b.dwg","userId":"u-7"}` {
		t.Fatalf("verify form bundle: %d %s", ver.StatusCode(), ver.Body)
	}

	gen, _ = in.client.GenerateWithBodyWithResponse(ctx, &api.GenerateParams{}, "application/json", strings.NewReader(`{}`), withHeader("x-api-key", "partner-c"))
	if gen.JSON403 == nil || gen.JSON403.Error != api.ErrorErrorInvalidApiKey {
		t.Fatalf("wrong key: %d %s", gen.StatusCode(), gen.Body)
	}
	ver, _ = in.client.VerifyWithResponse(ctx, withHeader("x-api-token", "00000000-0000-4000-8000-000000000000"))
	if ver.JSON403 == nil || ver.JSON403.Error != api.ErrorErrorInvalidToken {
		t.Fatalf("unknown token: %d %s", ver.StatusCode(), ver.Body)
	}
	if r, _ := in.client.ReadyzWithResponse(ctx); r.StatusCode() != 200 {
		t.Fatalf("readyz: %d", r.StatusCode())
	}

	if err := in.stop(); err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
	if !strings.Contains(in.stdout.String(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", in.stdout)
	}
	for _, secret := range []string{token, "partner-b", "partner-a"} {
		if strings.Contains(in.stdout.String()+in.stderr.String(), secret) {
			t.Errorf("a secret reached the logs: %q", secret)
		}
	}
}

// With no configuration: embedded store and a loud, working development key.
func TestDevelopmentMode(t *testing.T) {
	t.Parallel()
	in := start(t, env{})
	out := in.stderr.String()
	i := strings.Index(out, "dev_")
	if !strings.Contains(out, "DEVELOPMENT MODE") || i < 0 {
		t.Fatalf("no development banner with a key:\n%s", out)
	}
	key := strings.Fields(out[i:])[0]
	gen, err := in.client.GenerateWithBodyWithResponse(context.Background(), &api.GenerateParams{}, "application/json", strings.NewReader(`{"a":1}`), withHeader("x-api-key", key))
	if err != nil || gen.JSON200 == nil {
		t.Fatalf("generate with the printed key: %v %d %s", err, gen.StatusCode(), gen.Body)
	}
	ver, _ := in.client.VerifyWithResponse(context.Background(), withHeader("x-api-token", gen.JSON200.Token.String()))
	if string(ver.Body) != `{"a":1}` {
		t.Fatalf("verify: %s", ver.Body)
	}
	in.stop() // every access line written out
	if strings.Contains(in.stdout.String(), key) {
		t.Error("the development key reached the JSON log")
	}
}

// The server refuses a Redis without its layout, naming the command.
func TestServeRefusesUnmigratedRedis(t *testing.T) {
	t.Parallel()
	e := env{"TOKENSVC_REDIS_URL": storetest.NeedRedis(t, redisURL), "TOKENSVC_REDIS_PREFIX": freshPrefix(), "TOKENSVC_ADDR": "127.0.0.1:0", "TOKENSVC_API_KEYS": "k"}
	err := run(context.Background(), nil, e.get, nil, io.Discard, io.Discard, func(string) { t.Error("it listened") })
	if err == nil || !strings.Contains(err.Error(), "tokensvc migrate") {
		t.Fatalf("run = %v, want an error naming `tokensvc migrate`", err)
	}
}

// An unreachable Redis at start-up is waited for (it may be starting too),
// not a hang past cancellation and not a crash.
func TestStartupWaitsForRedis(t *testing.T) {
	t.Parallel()
	e := env{"TOKENSVC_REDIS_URL": "redis://127.0.0.1:1", "TOKENSVC_ADDR": "127.0.0.1:0", "TOKENSVC_API_KEYS": "k"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := run(ctx, nil, e.get, nil, io.Discard, io.Discard, func(string) { t.Error("it listened") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run = %v, want it to wait for Redis until cancelled", err)
	}
}

// When Redis goes away under a running server, generate, verify and readyz
// answer 503 store_unavailable within the store timeout: never 403, never
// a hang.
func TestRedisOutageIs503(t *testing.T) {
	t.Parallel()
	storetest.NeedDocker(t)
	ctx := context.Background()
	url, stop, err := storetest.StartRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	prefix := freshPrefix()
	e := env{"TOKENSVC_REDIS_URL": url, "TOKENSVC_REDIS_PREFIX": prefix}
	if err := run(ctx, []string{"migrate"}, e.get, nil, io.Discard, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	in := start(t, env{"TOKENSVC_REDIS_URL": url, "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_API_KEYS": "k", "TOKENSVC_STORE_TIMEOUT": "500ms"})
	gen, err := in.client.GenerateWithBodyWithResponse(ctx, &api.GenerateParams{}, "application/json", strings.NewReader(`{"a":1}`), withHeader("x-api-key", "k"))
	if err != nil || gen.JSON200 == nil {
		t.Fatalf("generate before the outage: %v %d", err, gen.StatusCode())
	}
	token := gen.JSON200.Token.String()

	stop() // Redis is gone

	gen, err = in.client.GenerateWithBodyWithResponse(ctx, &api.GenerateParams{}, "application/json", strings.NewReader(`{"a":1}`), withHeader("x-api-key", "k"))
	if err != nil || gen.JSON503 == nil || gen.JSON503.Error != api.ErrorErrorStoreUnavailable {
		t.Fatalf("generate during the outage: %v %d %s", err, gen.StatusCode(), gen.Body)
	}
	ver, err := in.client.VerifyWithResponse(ctx, withHeader("x-api-token", token))
	if err != nil || ver.JSON503 == nil || ver.JSON503.Error != api.ErrorErrorStoreUnavailable {
		t.Fatalf("verify during the outage: %v %d %s", err, ver.StatusCode(), ver.Body)
	}
	rdy, err := in.client.ReadyzWithResponse(ctx)
	if err != nil || rdy.StatusCode() != 503 {
		t.Fatalf("readyz during the outage: %v %d", err, rdy.StatusCode())
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, env{}.get, nil, &out, &out, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range settings() {
		if !strings.Contains(out.String(), s.env) || !strings.Contains(out.String(), s.yaml) {
			t.Errorf("-h does not list %s", s.env)
		}
	}
}

func TestHashKey(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"hash-key"}, env{}.get, strings.NewReader("s3cr3t\n"), &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	// printf s3cr3t | sha256sum
	if want := "sha256:4e738ca5563c06cfd0018299933d58db1dd8bf97f6973dc99bf6cdc64b5550bd\n"; out.String() != want {
		t.Fatalf("hash-key printed %q, want %q", out.String(), want)
	}
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	in := start(t, env{"TOKENSVC_API_KEYS": "k"})
	addr := strings.TrimPrefix(in.base, "http://")
	if err := run(context.Background(), []string{"healthcheck"}, env{"TOKENSVC_ADDR": addr}.get, nil, io.Discard, io.Discard, nil); err != nil {
		t.Fatalf("healthcheck of a live server: %v", err)
	}
	in.stop()
	if err := run(context.Background(), []string{"healthcheck"}, env{"TOKENSVC_ADDR": addr}.get, nil, io.Discard, io.Discard, nil); err == nil {
		t.Fatal("healthcheck of a stopped server succeeded")
	}
}
