package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// keptSpans is an in-memory exporter that keeps its spans past the
// provider's shutdown (tracetest's own forgets them then).
type keptSpans struct{ *tracetest.InMemoryExporter }

func (keptSpans) Shutdown(context.Context) error { return nil }

// serveConfig runs serve with cfg on 127.0.0.1:0 and returns the base URL,
// its log and a function that stops it and returns serve's error.
func serveConfig(t *testing.T, cfg config) (string, *lockedBuffer, func() error) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &lockedBuffer{}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, stdout, io.Discard, func(a string) { addr <- a }) }()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("serve returned before listening: %v\n%s", err, stdout)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve did not listen within a minute")
	}
	stopped := false
	var err error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return base, stdout, stop
}

// call sends one request and returns the status and body.
func call(t *testing.T, method, url, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Tracing on real Redis: HTTP and Redis spans in one trace per request,
// the caller's trace continued, trace ids in the access log, and no
// token, key, bundle or query in any span.
func TestTracing(t *testing.T) {
	t.Parallel()
	const (
		apiKey    = "pk-trace-4b7c1d9e0f2a3b5c"
		secretVal = "bundle-secret-8e7d6c5b4a39"
		callerTID = "4bf92f3577b34da6a3ce929d0e0e4736"
	)
	prefix := freshPrefix()
	migrateRedis(t, prefix)
	cfg, err := loadConfig(env{
		"TOKENSVC_REDIS_URL": redisURL, "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_API_KEYS": apiKey,
		// Pipelined commands run on the pipeliner's own context, so their
		// spans are not children of the request's; off shows them per request.
		"TOKENSVC_REDIS_AUTOPIPELINE": "off",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", // replaced by the in-memory exporter
	}.get, "")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Tracing {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT did not turn tracing on")
	}
	spans := tracetest.NewInMemoryExporter()
	cfg.SpanExporter = keptSpans{spans}
	base, logs, stop := serveConfig(t, cfg)

	status, body := call(t, "POST", base+"/generate?ttl=600", `{"auth":"`+secretVal+`"}`, "x-api-key", apiKey, "Content-Type", "application/json")
	if status != 200 {
		t.Fatalf("generate: %d %s", status, body)
	}
	var gen struct{ Token string }
	if err := json.Unmarshal([]byte(body), &gen); err != nil {
		t.Fatal(err)
	}
	token := gen.Token
	traceparent := "00-" + callerTID + "-00f067aa0ba902b7-01"
	if status, body := call(t, "GET", base+"/verify", "", "x-api-token", token, "traceparent", traceparent); status != 200 || !strings.Contains(body, secretVal) {
		t.Fatalf("verify: %d %s", status, body)
	}
	call(t, "GET", base+"/auth/app?token="+token, "")
	call(t, "GET", base+"/verify/"+token+"?token="+token, "") // a mistyped URL: 404
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}

	// The provider was shut down at exit, so every span was flushed.
	got := spans.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range got {
		byName[s.Name] = append(byName[s.Name], s)
	}
	for _, name := range []string{"POST /generate", "GET /verify", "GET /auth/*"} {
		if len(byName[name]) != 1 || byName[name][0].SpanKind != trace.SpanKindServer {
			t.Fatalf("want one server span %q; spans: %v", name, spanNames(got))
		}
	}
	verify := byName["GET /verify"][0]
	if verify.SpanContext.TraceID().String() != callerTID {
		t.Errorf("/verify trace id = %s, want the caller's %s", verify.SpanContext.TraceID(), callerTID)
	}
	if attr(verify.Attributes, "http.route") != "/verify" || attr(verify.Attributes, "http.status_code") != "200" {
		t.Errorf("/verify span attributes: %v", verify.Attributes)
	}
	// Redis commands are children of the request that sent them.
	redisInVerify := 0
	for _, s := range got {
		if attr(s.Attributes, "db.system") == "redis" && s.SpanContext.TraceID() == verify.SpanContext.TraceID() {
			redisInVerify++
		}
	}
	if redisInVerify == 0 {
		t.Errorf("no Redis span in the /verify trace; spans: %v", spanNames(got))
	}

	// The access log names each request's trace.
	traces := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct {
			Msg     string
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "request" {
			continue
		}
		if rec.TraceID == "" {
			t.Errorf("access log line without trace_id: %s", line)
		}
		traces[rec.TraceID] = true
	}
	for _, name := range []string{"POST /generate", "GET /verify", "GET /auth/*"} {
		if id := byName[name][0].SpanContext.TraceID().String(); !traces[id] {
			t.Errorf("the access log lacks the trace id %s of %s", id, name)
		}
	}

	// No secret, query or command statement in any span.
	secrets := []string{token, strings.ToUpper(token), apiKey, secretVal, "token="}
	for _, s := range got {
		all := append([]attribute.KeyValue{}, s.Attributes...)
		all = append(all, s.Resource.Attributes()...)
		for _, e := range s.Events {
			all = append(all, e.Attributes...)
		}
		for _, kv := range all {
			if kv.Key == "db.statement" {
				t.Errorf("span %q records the Redis statement", s.Name)
			}
			for _, secret := range secrets {
				if strings.Contains(kv.Value.String(), secret) {
					t.Errorf("span %q attribute %s holds a secret: %q", s.Name, kv.Key, kv.Value.String())
				}
			}
		}
		if strings.Contains(s.Name, token) || strings.Contains(s.Status.Description, token) {
			t.Errorf("span %q names the token", s.Name)
		}
	}
	if len(byName["GET"]) == 0 || attr(byName["GET"][0].Attributes, "http.target") != "" {
		t.Errorf("the unmatched request's span keeps its path: %v", byName["GET"])
	}
	for _, s := range got {
		if s.Resource.Set().Len() == 0 || attr(s.Resource.Attributes(), "service.name") != "tokensvc" || attr(s.Resource.Attributes(), "service.version") != version() {
			t.Fatalf("resource = %v, want service.name tokensvc and the version", s.Resource.Attributes())
		}
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attr(kvs []attribute.KeyValue, key string) string {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// Without OTEL_* variables there is no tracing and no trace id in the log.
func TestTracingOffByDefault(t *testing.T) {
	t.Parallel()
	in := start(t, env{"TOKENSVC_API_KEYS": "k", "TOKENSVC_METRICS_ADDR": "off"})
	call(t, "GET", in.base+"/healthz", "", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	in.stop()
	if strings.Contains(in.stdout.String(), "trace_id") || strings.Contains(in.stdout.String(), "tracing on") {
		t.Errorf("tracing without OTEL_* variables:\n%s", in.stdout)
	}
}

func TestTracingWanted(t *testing.T) {
	cases := []struct {
		name    string
		env     env
		want    bool
		wantErr string
	}{
		{"nothing set", env{}, false, ""},
		{"endpoint", env{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true, ""},
		{"traces endpoint", env{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true, ""},
		{"exporter otlp", env{"OTEL_TRACES_EXPORTER": "otlp"}, true, ""},
		{"exporter none wins", env{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false, ""},
		{"SDK disabled wins", env{"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, false, ""},
		{"SDK not disabled", env{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, true, ""},
		{"http/protobuf", env{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, true, ""},
		{"grpc refused", env{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"traces protocol wins", env{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, true, ""},
		{"protocol ignored while off", env{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, ""},
		{"unknown exporter", env{"OTEL_TRACES_EXPORTER": "zipkin"}, false, "OTEL_TRACES_EXPORTER"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tracingWanted(tc.env.get)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("tracingWanted = %v, %v; want %v", got, err, tc.want)
			}
			// loadConfig reads the same.
			c, err := loadConfig(tc.env.get, "")
			if err != nil || c.Tracing != tc.want {
				t.Fatalf("loadConfig: Tracing = %v, %v; want %v", c.Tracing, err, tc.want)
			}
		})
	}
}

// /metrics is on the main listener by default, alone on its own listener
// with TOKENSVC_METRICS_ADDR, and nowhere with off.
func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	const key = "pk-metrics-0a1b2c3d4e5f"
	wantMetrics := func(t *testing.T, url string) string {
		t.Helper()
		status, body := call(t, "GET", url, "")
		if status != 200 || !strings.Contains(body, `tokensvc_build_info{version="`+version()+`"} 1`) ||
			!strings.Contains(body, "go_goroutines") || !strings.Contains(body, "tokensvc_api_keys 1") {
			t.Fatalf("GET %s: %d\n%s", url, status, body)
		}
		return body
	}
	t.Run("main listener", func(t *testing.T) {
		t.Parallel()
		in := start(t, env{"TOKENSVC_API_KEYS": key})
		in.mint(t, key, "", `{"a":1}`)
		body := wantMetrics(t, in.base+"/metrics")
		if !strings.Contains(body, `tokensvc_tokens_minted_total{route="/generate"} 1`) || strings.Contains(body, key) {
			t.Errorf("/metrics:\n%s", body)
		}
	})
	t.Run("own listener", func(t *testing.T) {
		t.Parallel()
		in := start(t, env{"TOKENSVC_API_KEYS": key, "TOKENSVC_METRICS_ADDR": "127.0.0.1:0"})
		if status, _ := call(t, "GET", in.base+"/metrics", ""); status != 404 {
			t.Errorf("/metrics on the main listener: %d, want 404", status)
		}
		var addr string
		for _, line := range strings.Split(in.stdout.String(), "\n") {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics listening" {
				addr = rec.Addr
			}
		}
		if addr == "" {
			t.Fatalf("no metrics listener in the log:\n%s", in.stdout)
		}
		wantMetrics(t, "http://"+addr+"/metrics")
		if status, _ := call(t, "GET", "http://"+addr+"/verify", ""); status != 404 {
			t.Errorf("the metrics listener serves the API: %d", status)
		}
		in.stop()
		if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
			t.Error("the metrics listener outlived the server")
		}
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		in := start(t, env{"TOKENSVC_API_KEYS": key, "TOKENSVC_METRICS_ADDR": "off"})
		if status, _ := call(t, "GET", in.base+"/metrics", ""); status != 404 {
			t.Errorf("/metrics with metrics off: %d, want 404", status)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		t.Parallel()
		_, err := loadConfig(env{"TOKENSVC_METRICS_ADDR": "9090"}.get, "")
		if err == nil || !strings.Contains(err.Error(), "TOKENSVC_METRICS_ADDR") {
			t.Fatalf("loadConfig = %v, want an error naming TOKENSVC_METRICS_ADDR", err)
		}
		e := env{"TOKENSVC_API_KEYS": key, "TOKENSVC_ADDR": "127.0.0.1:0", "TOKENSVC_METRICS_ADDR": "256.0.0.1:1"}
		err = run(context.Background(), nil, e.get, nil, io.Discard, io.Discard, func(string) { t.Error("it listened") })
		if err == nil || !strings.Contains(err.Error(), "TOKENSVC_METRICS_ADDR") {
			t.Fatalf("run = %v, want an error naming TOKENSVC_METRICS_ADDR", err)
		}
	})
}
