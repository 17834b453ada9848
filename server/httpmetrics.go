package server

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// requestMetrics counts and times every request: tokensvc_http_requests_total,
// tokensvc_http_request_duration_seconds and the request and response size
// histograms, labelled code, method, host and url, as echo-contrib's
// echoprometheus named them (dashboards keep working). url is the route
// pattern ("unmatched" when no route matched) and host is always empty:
// the Host header is the client's to choose. Each (route, method, code)
// has its four series resolved once and kept, rather than four label sets
// hashed and looked up again for every request.
type requestMetrics struct {
	requests                    *prometheus.CounterVec
	duration, reqSize, respSize *prometheus.HistogramVec
	series                      sync.Map // seriesKey -> *requestSeries
}

type seriesKey struct {
	route, method string
	code          int
}

type requestSeries struct {
	requests                    prometheus.Counter
	duration, reqSize, respSize prometheus.Observer
}

// sizeBuckets cover request and response sizes from 1 KiB to 10 MiB
// (echoprometheus's).
var sizeBuckets = []float64{1 << 10, 2 << 10, 5 << 10, 10 << 10, 100 << 10, 500 << 10, 1 << 20, 2.5 * (1 << 20), 5 << 20, 10 << 20}

// newRequestMetrics registers the request metrics in reg.
func newRequestMetrics(reg prometheus.Registerer) (*requestMetrics, error) {
	labels := []string{"code", "method", "host", "url"}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "tokensvc", Subsystem: "http", Name: name, Help: help}
	}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		o := opts(name, help)
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help, Buckets: buckets}, labels)
	}
	m := &requestMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts(opts("requests_total", "How many HTTP requests processed, partitioned by status code and HTTP method.")), labels),
		duration: hist("request_duration_seconds", "The HTTP request latencies in seconds.", latencyBuckets),
		respSize: hist("response_size_bytes", "The HTTP response sizes in bytes.", sizeBuckets),
		reqSize:  hist("request_size_bytes", "The HTTP request sizes in bytes.", sizeBuckets),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.respSize, m.reqSize} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// of returns the series of one label set, resolving it the first time.
// The label sets are bounded: route patterns, known methods, statuses.
func (m *requestMetrics) of(route, method string, code int) *requestSeries {
	k := seriesKey{route, method, code}
	if s, ok := m.series.Load(k); ok {
		return s.(*requestSeries)
	}
	values := []string{strconv.Itoa(code), method, "", route}
	s, _ := m.series.LoadOrStore(k, &requestSeries{
		requests: m.requests.WithLabelValues(values...),
		duration: m.duration.WithLabelValues(values...),
		reqSize:  m.reqSize.WithLabelValues(values...),
		respSize: m.respSize.WithLabelValues(values...),
	})
	return s.(*requestSeries)
}

// middleware records every request but the scrapes of /metrics.
func (m *requestMetrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Path() == MetricsPath {
			return next(c)
		}
		r := c.Request()
		size := approximateRequestSize(r)
		start := time.Now()
		err := next(c)
		elapsed := time.Since(start).Seconds()
		s := m.of(routeOf(c), methodLabel(r.Method), answeredStatus(c, err))
		s.duration.Observe(elapsed)
		s.requests.Inc()
		s.reqSize.Observe(float64(size))
		s.respSize.Observe(float64(c.Response().Size))
		return err
	}
}

// answeredStatus is the status a request was answered with; an error that
// escaped the error handler counts as its HTTP error's code, or 500.
func answeredStatus(c echo.Context, err error) int {
	status := c.Response().Status
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status = he.Code
		}
		if status == 0 || status == http.StatusOK {
			status = http.StatusInternalServerError
		}
	}
	return status
}

// approximateRequestSize is the request's size as echoprometheus
// estimated it: path, method, protocol, headers, host and body.
func approximateRequestSize(r *http.Request) int {
	n := len(r.Method) + len(r.Proto) + len(r.Host)
	if r.URL != nil {
		n += len(r.URL.Path)
	}
	for name, values := range r.Header {
		n += len(name)
		for _, v := range values {
			n += len(v)
		}
	}
	if r.ContentLength != -1 {
		n += int(r.ContentLength)
	}
	return n
}
