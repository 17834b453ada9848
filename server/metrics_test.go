package server

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tokensvc/tokensvc/store"
)

// newMetricsHarness serves with metrics in a registry of its own, also on
// /metrics.
func newMetricsHarness(t *testing.T, edit func(*Config)) (*harness, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(c *Config) {
		c.Metrics, c.ServeMetrics = reg, true
		if edit != nil {
			edit(c)
		}
	})
	return h, reg
}

// sample is the value of the one series of name with exactly these labels:
// a counter's or gauge's value, a histogram's count; -1 when there is no
// such series.
func sample(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

// scrape reads /metrics through the real handler, checked against the
// spec's rule for routes outside the contract.
func scrape(t *testing.T, h *harness) string {
	t.Helper()
	res := h.do(t, "GET", "/metrics", "")
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q", res.status, res.header.Get("Content-Type"))
	}
	return string(res.body)
}

// A session of requests moves the counters and histograms it should, with
// route patterns and error codes as labels, and /metrics shows them
// without any token or key.
func TestMetricsCountRequestsAndTokens(t *testing.T) {
	h, reg := newMetricsHarness(t, nil)
	token := h.generate(t, `{"userId":"u-1"}`)
	once := h.do(t, "POST", "/generate?uses=1", `{"userId":"u-2"}`, jsonCT, "x-api-key: "+partnerKey).json(t)["token"].(string)
	unknown := "5f0c7a52-3b1e-4d6a-9c8b-7e6f5a4b3c2d"

	h.do(t, "GET", "/verify", "", "x-api-token: "+token)
	h.do(t, "GET", "/verify", "", "Authorization: Bearer "+once)
	wantError(t, h.do(t, "GET", "/verify", "", "x-api-token: "+once), 403, "token_used")
	wantError(t, h.do(t, "GET", "/verify", "", "x-api-token: "+unknown), 403, "invalid_token")
	h.do(t, "POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q,"nope",%q]}`, token, once), jsonCT)
	if res := h.do(t, "GET", "/auth", "", "x-api-token: "+token); res.status != 200 {
		t.Fatalf("/auth: %d %s", res.status, res.body)
	}
	wantError(t, h.do(t, "GET", "/auth/app", ""), 401, "missing_token")
	wantError(t, h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: wrong-"+otherKey), 403, "invalid_api_key")
	// A mistyped URL with a token in its path and query: no route, so no
	// label can hold it.
	h.do(t, "GET", "/verify/"+token+"?token="+token, "")
	h.do(t, "GET", "/nope/"+token, "")

	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tokensvc_tokens_minted_total", map[string]string{"route": "/generate"}, 2},
		{"tokensvc_tokens_verified_total", map[string]string{"route": "/verify"}, 2},
		{"tokensvc_tokens_verified_total", map[string]string{"route": "/verify/batch"}, 1},
		{"tokensvc_tokens_verified_total", map[string]string{"route": "/auth"}, 1},
		{"tokensvc_failed_checks_total", map[string]string{"reason": "token_used"}, 2}, // /verify and the batch
		{"tokensvc_failed_checks_total", map[string]string{"reason": "invalid_token"}, 2},
		{"tokensvc_failed_checks_total", map[string]string{"reason": "missing_token"}, -1},  // nothing was presented
		{"tokensvc_failed_checks_total", map[string]string{"reason": "invalid_api_key"}, 1}, // a guess, like a token's
		{"tokensvc_http_requests_total", map[string]string{"code": "200", "method": "POST", "host": "", "url": "/generate"}, 2},
		{"tokensvc_http_requests_total", map[string]string{"code": "403", "method": "POST", "host": "", "url": "/generate"}, 1},
		{"tokensvc_http_requests_total", map[string]string{"code": "200", "method": "GET", "host": "", "url": "/verify"}, 2},
		{"tokensvc_http_requests_total", map[string]string{"code": "403", "method": "GET", "host": "", "url": "/verify"}, 2},
		{"tokensvc_http_requests_total", map[string]string{"code": "401", "method": "GET", "host": "", "url": "/auth/*"}, 1},
		{"tokensvc_http_request_duration_seconds", map[string]string{"code": "200", "method": "GET", "host": "", "url": "/auth"}, 1},
		{"tokensvc_store_duration_seconds", map[string]string{"operation": "put"}, 2},
		{"tokensvc_store_duration_seconds", map[string]string{"operation": "consume"}, 5},
		{"tokensvc_store_duration_seconds", map[string]string{"operation": "consume_many"}, 1},
		{"tokensvc_store_errors_total", map[string]string{"operation": "consume"}, -1}, // used and unknown are answers
		{"tokensvc_api_keys", nil, 2},
		{"tokensvc_api_keys_generation", nil, 1},
		{"tokensvc_api_keys_last_reload_failed", nil, 0},
	}
	for _, tc := range cases {
		if got := sample(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if got := sample(t, reg, "tokensvc_api_keys_last_success_timestamp_seconds", nil); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success timestamp = %v, want about now", got)
	}
	// Every route label is a route pattern or "unmatched".
	if n := testutil.CollectAndCount(reg, "tokensvc_http_requests_total"); n != 8 {
		t.Errorf("tokensvc_http_requests_total has %d series, want 8", n)
	}

	out := scrape(t, h)
	for _, want := range []string{
		`tokensvc_tokens_minted_total{route="/generate"} 2`,
		`tokensvc_failed_checks_total{reason="token_used"} 2`,
		`tokensvc_http_requests_total{code="404",host="",method="GET",url="unmatched"} 2`,
		`tokensvc_store_duration_seconds_bucket{operation="put",le="0.0005"}`,
		"tokensvc_api_keys 2",
		"promhttp_metric_handler_requests_total",
		// The request metrics as echo-contrib's echoprometheus named and
		// described them, before tokensvc made its own: dashboards keep
		// working.
		"# HELP tokensvc_http_requests_total How many HTTP requests processed, partitioned by status code and HTTP method.",
		"# HELP tokensvc_http_request_duration_seconds The HTTP request latencies in seconds.",
		"# HELP tokensvc_http_request_size_bytes The HTTP request sizes in bytes.",
		"# HELP tokensvc_http_response_size_bytes The HTTP response sizes in bytes.",
		`tokensvc_http_request_duration_seconds_bucket{code="200",host="",method="GET",url="/verify",le="0.0005"}`,
		`tokensvc_http_response_size_bytes_bucket{code="200",host="",method="GET",url="/verify",le="1024"}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range []string{token, once, unknown, partnerKey, otherKey, "u-1"} {
		if strings.Contains(out, secret) {
			t.Errorf("/metrics holds a secret: %q", secret)
		}
	}
	if strings.Contains(out, `url="/metrics"`) {
		t.Error("/metrics counts its own scrapes as API requests")
	}
	// Scrapes are logged at debug level only.
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, `"route":"/metrics"`) && !strings.Contains(line, `"level":"DEBUG"`) {
			t.Errorf("a scrape logged above debug level: %s", line)
		}
	}
}

// Refresh mints; its refusals count like other token checks.
func TestMetricsRefresh(t *testing.T) {
	h, reg := newMetricsHarness(t, nil)
	token := h.generate(t, `{"a":1}`)
	if res := h.do(t, "POST", "/refresh", "", "x-api-token: "+token); res.status != 200 {
		t.Fatalf("refresh: %d %s", res.status, res.body)
	}
	wantError(t, h.do(t, "POST", "/refresh", "", "x-api-token: "+token), 403, "token_revoked")
	if got := sample(t, reg, "tokensvc_tokens_minted_total", map[string]string{"route": "/refresh"}); got != 1 {
		t.Errorf("minted on /refresh = %v, want 1", got)
	}
	if got := sample(t, reg, "tokensvc_failed_checks_total", map[string]string{"reason": "token_revoked"}); got != 1 {
		t.Errorf("rejected token_revoked = %v, want 1", got)
	}
}

// Store failures count by operation; store answers about tokens do not.
func TestMetricsStoreErrors(t *testing.T) {
	h, reg := newMetricsHarness(t, func(c *Config) {
		c.Store = failingStore{err: fmt.Errorf("dial: %w", store.ErrUnavailable)}
	})
	wantError(t, h.do(t, "GET", "/readyz", ""), 503, "store_unavailable")
	wantError(t, h.do(t, "GET", "/verify", "", "x-api-token: 5f0c7a52-3b1e-4d6a-9c8b-7e6f5a4b3c2d"), 503, "store_unavailable")
	for op, want := range map[string]float64{"ping": 1, "consume": 1} {
		if got := sample(t, reg, "tokensvc_store_errors_total", map[string]string{"operation": op, "error": "unavailable"}); got != want {
			t.Errorf("store errors %s = %v, want %v", op, got, want)
		}
	}
	// A 503 says nothing about the token.
	if n := testutil.CollectAndCount(reg, "tokensvc_failed_checks_total"); n != 0 {
		t.Errorf("a store outage counted as %d rejected-token series", n)
	}
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{store.ErrNotFound, ""},
		{fmt.Errorf("store: consume: %w", store.ErrUsed), ""},
		{store.ErrRevoked, ""},
		{store.ErrExists, ""},
		{store.ErrUnavailable, "unavailable"},
		{fmt.Errorf("store: put: %w: %w", store.ErrFull, store.ErrUnavailable), "full"},
		{errors.New("WRONGTYPE"), "unexpected"},
	}
	for _, tc := range cases {
		if got := storeFailure(tc.err); got != tc.want {
			t.Errorf("storeFailure(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// Without a registry nothing is counted or served; with one but without
// ServeMetrics, /metrics is the caller's to serve elsewhere.
func TestMetricsOff(t *testing.T) {
	reg := prometheus.NewRegistry()
	cases := []struct {
		name string
		edit func(*Config)
	}{
		{"no registry", nil},
		{"not served here", func(c *Config) { c.Metrics = reg }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.edit)
			token := h.generate(t, `{}`)
			h.do(t, "GET", "/verify", "", "x-api-token: "+token)
			wantError(t, h.do(t, "GET", "/metrics", ""), 404, "not_found")
		})
	}
	if got := sample(t, reg, "tokensvc_tokens_minted_total", map[string]string{"route": "/generate"}); got != 1 {
		t.Errorf("minted = %v, want 1 (counted though not served here)", got)
	}
	rec := httptest.NewRecorder()
	MetricsHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "tokensvc_tokens_minted_total") {
		t.Errorf("MetricsHandler: %d %s", rec.Code, rec.Body)
	}
}

// A registry takes one server: a second would count into the same series.
func TestMetricsRegistryTakenTwice(t *testing.T) {
	h, reg := newMetricsHarness(t, nil)
	cfg := h.srv.cfg
	cfg.Metrics = reg
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("New with a used registry = %v, want a metrics error", err)
	}
}

// The keys collector follows the registry's Status.
func TestKeysCollector(t *testing.T) {
	h, _ := newMetricsHarness(t, nil)
	want := `
# HELP tokensvc_api_keys Partner keys in force.
# TYPE tokensvc_api_keys gauge
tokensvc_api_keys 2
# HELP tokensvc_api_keys_last_reload_failed 1 when the last key reload failed (the last good keys stay in force), else 0.
# TYPE tokensvc_api_keys_last_reload_failed gauge
tokensvc_api_keys_last_reload_failed 0
`
	if err := testutil.CollectAndCompare(keysCollector{h.srv.cfg.Partners}, strings.NewReader(want), "tokensvc_api_keys", "tokensvc_api_keys_last_reload_failed"); err != nil {
		t.Error(err)
	}
	if diff := cmp.Diff(4, testutil.CollectAndCount(keysCollector{h.srv.cfg.Partners})); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// Invented methods are one label value, and a request line as long as the
// header limit is refused before it reaches a label or the log.
func TestMetricsLabelsAreBounded(t *testing.T) {
	h, reg := newMetricsHarness(t, nil)
	for i := 0; i < 300; i++ {
		req := httptest.NewRequest("GET", "/verify", nil)
		req.Method = fmt.Sprintf("M%d", i)
		h.srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	if got := sample(t, reg, "tokensvc_http_requests_total", map[string]string{"code": "405", "method": "OTHER", "host": "", "url": "/verify"}); got != 300 {
		t.Errorf("requests with invented methods under OTHER = %v, want 300", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.HasPrefix(l.GetValue(), "M") && l.GetName() == "method" {
					t.Fatalf("%s has a series for method %q", f.GetName(), l.GetValue())
				}
			}
		}
	}
	if strings.Contains(h.logs.String(), `"method":"M1"`) {
		t.Error("an invented method reached the access log")
	}
	res := h.do(t, "GET", "/healthz?"+strings.Repeat("a", 33<<10), "")
	wantError(t, res, 431, "headers_too_large")
}
