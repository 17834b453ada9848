package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

// MetricsPath is where the Prometheus metrics are served. It is outside
// openapi.yaml, like the /docs page.
const MetricsPath = "/metrics"

// Label values are route patterns and error codes, never what a client
// sent: a URL can hold a token, and a label per distinct value would let
// any client grow the registry without bound.

// latencyBuckets cover a store call or an API request: most take well under
// a millisecond on the embedded store, a few milliseconds on Redis, and
// the store timeout (1 s by default) bounds a slow one.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// methodLabel is a request's method if it is a standard one, else
// "OTHER", so invented methods cannot grow the registry.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "OTHER"
}

// metrics are the server's own collectors. A nil *metrics counts nothing,
// so handlers need not ask whether metrics are on. The children the hot
// paths use (by route, error code, store operation) are resolved the first
// time each is used and kept: a count is then one atomic add, not a label
// set hashed and looked up in the vector per request. The exposition is
// the same: a series appears once it is first counted.
type metrics struct {
	minted   *prometheus.CounterVec
	verified *prometheus.CounterVec
	rejected *prometheus.CounterVec
	storeDur *prometheus.HistogramVec
	storeErr *prometheus.CounterVec

	mintedBy, verifiedBy, rejectedBy children[prometheus.Counter]
	storeBy                          children[prometheus.Observer]
}

// children keeps the children of one single-label vector, by value.
type children[T any] struct {
	with func(...string) T
	m    sync.Map // label value -> T
}

func (c *children[T]) of(v string) T {
	if x, ok := c.m.Load(v); ok {
		return x.(T)
	}
	x, _ := c.m.LoadOrStore(v, c.with(v))
	return x.(T)
}

// newMetrics registers the server's collectors in reg: tokens, store calls
// and the partner key source. The HTTP request metrics are requestMetrics.
func newMetrics(reg prometheus.Registerer, partners Partners) (*metrics, error) {
	m := &metrics{
		// No partner key label: key ids are as many as the operator
		// configures (thousands, and they come and go with reloads); the
		// access log has the key_id of every request.
		minted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokensvc_tokens_minted_total",
			Help: "Tokens minted, by route (/generate, or /refresh for a refreshed token). An Idempotency-Key replay counts again.",
		}, []string{"route"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokensvc_tokens_verified_total",
			Help: "Tokens that passed a check, by route (/verify, /verify/batch per token, /auth).",
		}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokensvc_failed_checks_total",
			Help: "Presented credentials that did not check out, by reason: the error code (invalid_token, token_used, token_revoked, origin_not_allowed for tokens, invalid_api_key for partner keys, unauthorized for the admin token and gateway secret). The same answers count against the brute-force guard. A batch counts each token.",
		}, []string{"reason"}),
		storeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokensvc_store_duration_seconds",
			Help:    "Time of each token store call, by operation.",
			Buckets: latencyBuckets,
		}, []string{"operation"}),
		storeErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokensvc_store_errors_total",
			Help: "Token store calls that failed, by operation and error: full (Redis out of memory, refusing writes), unavailable (no answer in time, failover, down) or unexpected. Not found, used, revoked and exists are answers, not failures.",
		}, []string{"operation", "error"}),
	}
	for _, c := range []prometheus.Collector{m.minted, m.verified, m.rejected, m.storeDur, m.storeErr, keysCollector{partners}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.mintedBy.with, m.verifiedBy.with, m.rejectedBy.with = m.minted.WithLabelValues, m.verified.WithLabelValues, m.rejected.WithLabelValues
	m.storeBy.with = m.storeDur.WithLabelValues
	return m, nil
}

// MetricsHandler serves the metrics of reg in the Prometheus exposition
// formats, counting its own scrapes.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}

// routeOf is the request's route pattern, or "unmatched".
func routeOf(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unmatched"
}

func (m *metrics) tokenMinted(route string) {
	if m != nil {
		m.mintedBy.of(route).Inc()
	}
}

func (m *metrics) tokenVerified(route string) {
	if m != nil {
		m.verifiedBy.of(route).Inc()
	}
}

// finished counts a failed check once the answer is known.
func (m *metrics) finished(errCode string) {
	if m != nil && failedCheck(api.ErrorError(errCode)) {
		m.rejectedBy.of(errCode).Inc()
	}
}

// batchChecked counts the tokens of one /verify/batch answer.
func (m *metrics) batchChecked(route string, results []api.BatchResult) {
	if m == nil {
		return
	}
	valid := 0
	for _, r := range results {
		switch {
		case r.Valid:
			valid++
		case r.Error != nil && failedCheck(api.ErrorError(*r.Error)):
			m.rejectedBy.of(string(*r.Error)).Inc()
		}
	}
	if valid > 0 {
		m.verifiedBy.of(route).Add(float64(valid))
	}
}

// keysCollector reports the partner key source from one Status() per
// scrape.
type keysCollector struct{ p Partners }

var (
	keysCountDesc = prometheus.NewDesc("tokensvc_api_keys",
		"Partner keys in force.", nil, nil)
	keysGenerationDesc = prometheus.NewDesc("tokensvc_api_keys_generation",
		"Key sets installed since start; grows by one each time a reload changes the keys.", nil, nil)
	keysSuccessDesc = prometheus.NewDesc("tokensvc_api_keys_last_success_timestamp_seconds",
		"Unix time of the last key reload that left the keys in sync with their source.", nil, nil)
	keysFailedDesc = prometheus.NewDesc("tokensvc_api_keys_last_reload_failed",
		"1 when the last key reload failed (the last good keys stay in force), else 0.", nil, nil)
)

func (k keysCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- keysCountDesc
	ch <- keysGenerationDesc
	ch <- keysSuccessDesc
	ch <- keysFailedDesc
}

func (k keysCollector) Collect(ch chan<- prometheus.Metric) {
	st := k.p.Status()
	failed, success := 0.0, 0.0
	if st.LastError != "" {
		failed = 1
	}
	if !st.LastSuccess.IsZero() {
		success = float64(st.LastSuccess.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(keysCountDesc, prometheus.GaugeValue, float64(st.Keys))
	ch <- prometheus.MustNewConstMetric(keysGenerationDesc, prometheus.GaugeValue, float64(st.Generation))
	ch <- prometheus.MustNewConstMetric(keysSuccessDesc, prometheus.GaugeValue, success)
	ch <- prometheus.MustNewConstMetric(keysFailedDesc, prometheus.GaugeValue, failed)
}

// meteredStore times every call of the Store it wraps and counts its
// failures, so the store package stays free of Prometheus.
type meteredStore struct {
	next Store
	m    *metrics
}

var _ Store = meteredStore{}

// observe records one call of op that started at start and ended in err.
func (s meteredStore) observe(op string, start time.Time, err error) {
	s.m.storeBy.of(op).Observe(time.Since(start).Seconds())
	if kind := storeFailure(err); kind != "" {
		s.m.storeErr.WithLabelValues(op, kind).Inc()
	}
}

// storeFailure tells a failure from the store's answers about a token:
// "" for an answer, else "full", "unavailable" or "unexpected".
func storeFailure(err error) string {
	switch {
	case err == nil, errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrUsed),
		errors.Is(err, store.ErrRevoked), errors.Is(err, store.ErrExists):
		return ""
	case errors.Is(err, store.ErrFull):
		return "full"
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	}
	return "unexpected"
}

func (s meteredStore) Put(ctx context.Context, id store.ID, rec store.Record, note string) error {
	start := time.Now()
	err := s.next.Put(ctx, id, rec, note)
	s.observe("put", start, err)
	return err
}

func (s meteredStore) Get(ctx context.Context, id store.ID) (store.Record, error) {
	start := time.Now()
	rec, err := s.next.Get(ctx, id)
	s.observe("get", start, err)
	return rec, err
}

func (s meteredStore) Consume(ctx context.Context, id store.ID, now time.Time, note string) (store.Record, error) {
	start := time.Now()
	rec, err := s.next.Consume(ctx, id, now, note)
	s.observe("consume", start, err)
	return rec, err
}

// ConsumeMany counts as one failure when any of its results failed.
func (s meteredStore) ConsumeMany(ctx context.Context, ids []store.ID, now time.Time, note string) []store.Result {
	start := time.Now()
	res := s.next.ConsumeMany(ctx, ids, now, note)
	s.observe("consume_many", start, batchFailure(res))
	return res
}

// GetMany counts as one failure when any of its results failed.
func (s meteredStore) GetMany(ctx context.Context, ids []store.ID) []store.Result {
	start := time.Now()
	res := s.next.GetMany(ctx, ids)
	s.observe("get_many", start, batchFailure(res))
	return res
}

// batchFailure is the first failure among a batch's results, or nil.
func batchFailure(res []store.Result) error {
	for _, r := range res {
		if storeFailure(r.Err) != "" {
			return r.Err
		}
	}
	return nil
}

func (s meteredStore) Take(ctx context.Context, id store.ID, now time.Time) (store.Record, error) {
	start := time.Now()
	rec, err := s.next.Take(ctx, id, now)
	s.observe("take", start, err)
	return rec, err
}

func (s meteredStore) Restore(ctx context.Context, id store.ID, rec store.Record) error {
	start := time.Now()
	err := s.next.Restore(ctx, id, rec)
	s.observe("restore", start, err)
	return err
}

func (s meteredStore) Revoke(ctx context.Context, id store.ID, now time.Time, note string) error {
	start := time.Now()
	err := s.next.Revoke(ctx, id, now, note)
	s.observe("revoke", start, err)
	return err
}

func (s meteredStore) KeyIDs(ctx context.Context) ([]string, error) {
	start := time.Now()
	ids, err := s.next.KeyIDs(ctx)
	s.observe("key_ids", start, err)
	return ids, err
}

func (s meteredStore) SetKeyIDs(ctx context.Context, add, remove []string) error {
	start := time.Now()
	err := s.next.SetKeyIDs(ctx, add, remove)
	s.observe("set_key_ids", start, err)
	return err
}

func (s meteredStore) RevokeKey(ctx context.Context, keyID string) (uint64, error) {
	start := time.Now()
	epoch, err := s.next.RevokeKey(ctx, keyID)
	s.observe("revoke_key", start, err)
	return epoch, err
}

func (s meteredStore) PutMarker(ctx context.Context, name store.ID, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := s.next.PutMarker(ctx, name, value, ttl)
	s.observe("put_marker", start, err)
	return err
}

func (s meteredStore) GetMarker(ctx context.Context, name store.ID) ([]byte, error) {
	start := time.Now()
	value, err := s.next.GetMarker(ctx, name)
	s.observe("get_marker", start, err)
	return value, err
}

func (s meteredStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.next.Ping(ctx)
	s.observe("ping", start, err)
	return err
}
