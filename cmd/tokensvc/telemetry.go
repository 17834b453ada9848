package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/tokensvc/tokensvc/server"
)

// metricsOff is the TOKENSVC_METRICS_ADDR that turns metrics off.
const metricsOff = "off"

// telemetryShutdownTimeout bounds the flush of the last spans at exit, so
// an unreachable collector cannot hold the process.
const telemetryShutdownTimeout = 5 * time.Second

// telemetry is what one run reports through: a Prometheus registry of its
// own and an OpenTelemetry tracer provider, each nil when off.
type telemetry struct {
	registry   *prometheus.Registry
	tracer     *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
}

// newTelemetry builds the registry (unless TOKENSVC_METRICS_ADDR is off)
// and, when the OTEL_* variables ask for traces, the tracer provider.
func newTelemetry(ctx context.Context, cfg config, log *slog.Logger) (*telemetry, error) {
	t := &telemetry{propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	if cfg.MetricsAddr != metricsOff {
		t.registry = prometheus.NewRegistry()
		build := prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "tokensvc_build_info",
			Help:        "Always 1; the version label is the running build's.",
			ConstLabels: prometheus.Labels{"version": version()},
		})
		build.Set(1)
		for _, c := range []prometheus.Collector{build, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
			if err := t.registry.Register(c); err != nil {
				return nil, err
			}
		}
	}
	if !cfg.Tracing {
		return t, nil
	}
	exp := cfg.SpanExporter
	if exp == nil {
		// The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers,
		// timeout, TLS) itself.
		var err error
		if exp, err = otlptracehttp.New(ctx); err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the defaults.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("tokensvc"), semconv.ServiceVersion(version())),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// The sampler follows OTEL_TRACES_SAMPLER (default: parent-based,
	// always on), the batcher OTEL_BSP_*.
	t.tracer = sdktrace.NewTracerProvider(sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(pathScrubber{}), sdktrace.WithBatcher(exp))
	// Export failures go to the JSON log, not to the SDK's default
	// plain-text logger. The handler is global in the SDK; the last
	// started run's log wins.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: " + err.Error()) }))
	log.Info("tracing on: OpenTelemetry traces exported by OTLP/HTTP")
	return t, nil
}

// configure hands the registry and the tracer to the server.
func (t *telemetry) configure(c *server.Config, metricsHere bool) {
	c.Metrics, c.ServeMetrics = t.registry, t.registry != nil && metricsHere
	if t.tracer != nil {
		c.TracerProvider, c.Propagator = t.tracer, t.propagator
	}
}

// instrumentRedis traces every Redis command by name only: with the
// statement recorded, spans would hold keys and sealed bundles.
func (t *telemetry) instrumentRedis(c redis.UniversalClient) error {
	if t.tracer == nil {
		return nil
	}
	return redisotel.InstrumentTracing(c, redisotel.WithTracerProvider(t.tracer),
		redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false))
}

// shutdown flushes the spans still queued and stops the tracer.
func (t *telemetry) shutdown(ctx context.Context) error {
	if t.tracer == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryShutdownTimeout)
	defer cancel()
	return t.tracer.Shutdown(ctx)
}

// listenMetrics serves /metrics alone on TOKENSVC_METRICS_ADDR, in plain
// HTTP, for a scraper on a private network. It returns the listening
// address and the function that closes it.
func (t *telemetry) listenMetrics(addr string, log *slog.Logger) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("configuration TOKENSVC_METRICS_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+server.MetricsPath, server.MetricsHandler(t.registry))
	hs := newHTTPServer(mux, log)
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	// A scrape is short: it gets a moment to finish, not the API's
	// shutdown timeout.
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}, nil
}

// tracingWanted reads the standard OpenTelemetry variables: traces are on
// when an OTLP endpoint or OTEL_TRACES_EXPORTER is set, unless
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. Only OTLP over
// HTTP (protobuf) is built in.
func tracingWanted(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	switch exporter {
	case "none":
		return false, nil
	case "", "otlp":
	default:
		return false, fmt.Errorf("configuration OTEL_TRACES_EXPORTER: %q: want otlp or none", exporter)
	}
	if exporter == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return false, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(name)); p != "" {
			if p != "http/protobuf" {
				return false, fmt.Errorf("configuration %s: %q: only http/protobuf is built in (the collector's port 4318)", name, p)
			}
			break // the signal's own variable wins
		}
	}
	return true, nil
}

// pathScrubber keeps request paths out of spans: the HTTP instrumentation
// records the path (never the query), and a mistyped URL can carry a
// token in it (GET /verify/<token>). The route pattern replaces it.
type pathScrubber struct{}

// pathKeys are the span attributes, old and new conventions, that can hold
// a request path or URL.
var pathKeys = map[attribute.Key]bool{"http.target": true, "http.url": true, "url.full": true, "url.path": true, "url.query": true}

func (pathScrubber) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	var route string
	var found []attribute.Key
	for _, kv := range s.Attributes() {
		switch {
		case kv.Key == "http.route":
			route = kv.Value.AsString()
		case pathKeys[kv.Key]:
			found = append(found, kv.Key)
		}
	}
	for _, k := range found {
		s.SetAttributes(k.String(route))
	}
}

func (pathScrubber) OnEnd(sdktrace.ReadOnlySpan)      {}
func (pathScrubber) Shutdown(context.Context) error   { return nil }
func (pathScrubber) ForceFlush(context.Context) error { return nil }
