package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/migrations"
	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/server/ratelimit"
	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
)

// HTTP server limits. WriteTimeout is above the store timeout so a slow
// store still gets its 503 written.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 20 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10 // the server limits the request line and headers to 32 KiB itself, with a JSON answer
	// redisWait is how long start-up waits for an unreachable Redis.
	redisWait = 30 * time.Second
)

func serve(ctx context.Context, cfg config, stdout, stderr io.Writer, ready func(string)) error {
	// Deferred first, so it runs last: every line logged before serve
	// returns is written out.
	lw := newLogWriter(stdout, logFlushEvery)
	defer lw.Close()
	log := slog.New(newLogHandler(lw, &slog.HandlerOptions{Level: cfg.LogLevel}))
	log.Info("starting", "version", version())
	startProfiling(log)

	tel, err := newTelemetry(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := tel.shutdown(ctx); err != nil {
			log.Warn("tracing: flush at exit", "err", err)
		}
	}()

	st, limiter, rc, closeStore, err := openStore(ctx, cfg, log, tel)
	if err != nil {
		return err
	}
	defer closeStore()
	trail, closeTrail, err := openAudit(cfg, stdout, rc)
	if err != nil {
		return err
	}
	defer closeTrail()
	if trail == nil {
		log.Info("audit trail off (TOKENSVC_AUDIT=off): set it to redis, a file or stdout to record security events")
	}

	keySpec := cfg.APIKeys
	if keySpec == "" {
		if keySpec, err = devKey(stderr); err != nil {
			return err
		}
	}
	regCtx, stopReg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReg()
	partners, err := keys.New(regCtx, keySpec, keys.Options{ReloadEvery: cfg.APIKeysReload, Logger: log})
	if err != nil {
		return fmt.Errorf("configuration TOKENSVC_API_KEYS: %w", err)
	}

	idemSecret := cfg.IdempotencyKey
	if len(idemSecret) == 0 && cfg.RedisURL == "" {
		// One process: a secret of its own is as good as a shared one.
		idemSecret = make([]byte, 32)
		if _, err := rand.Read(idemSecret); err != nil {
			return err
		}
	}
	scfg := server.Config{
		Store: st, Partners: partners, Logger: log,
		TokenTTL: cfg.TokenTTL, MaxTokenTTL: cfg.MaxTokenTTL, MaxSessionLifetime: cfg.MaxSession,
		MaxBodyBytes: cfg.MaxBodyBytes, StoreTimeout: cfg.StoreTimeout, MaxBatch: cfg.MaxBatch,
		AdminToken: cfg.AdminToken, IdempotencySecret: idemSecret, KeepRemovedKeyTokens: cfg.KeepRemovedKeyTokens,
		ForwardCookie: cfg.ForwardCookie, ForwardFields: cfg.ForwardFields, ForwardSecret: cfg.ForwardSecret, ForwardCacheTTL: cfg.ForwardCacheTTL,
		Limiter: limiter, GenerateRate: cfg.GenerateRate, FailureRate: cfg.FailureRate, TrustedProxies: cfg.TrustedProxies,
		Audit: trail, AuditRequired: cfg.AuditRequired, NoTokenHistory: !cfg.TokenHistory,
	}
	tel.configure(&scfg, cfg.MetricsAddr == "")
	srv, err := server.New(scfg)
	if err != nil {
		return err
	}
	defer func() { // after the last request, before the store's client closes
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			log.Warn("audit trail: events still queued at exit", "err", err)
		}
	}()
	partners.OnChange(srv.KeysChanged)
	syncCtx, cancelSync := context.WithTimeout(ctx, cfg.StoreTimeout)
	if err := srv.SyncKeys(syncCtx); err != nil {
		log.Error("could not sync the partner keys with the store; retrying", "err", err)
	}
	cancelSync()
	go partners.Run(regCtx)
	go retryKeySync(regCtx, srv, cfg.APIKeysReload, cfg.StoreTimeout, log)
	var handler http.Handler = srv
	var certs *certFiles
	if cfg.TLSCert != "" {
		if certs, err = newCertFiles(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
		handler = hsts(srv)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("configuration TOKENSVC_ADDR: %w", err)
	}
	if certs != nil {
		ln = tls.NewListener(ln, serverTLS(certs))
	}
	if tel.registry != nil && cfg.MetricsAddr != "" {
		addr, closeMetrics, err := tel.listenMetrics(cfg.MetricsAddr, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer closeMetrics()
		log.Info("metrics listening", "addr", addr)
	}
	hs := newHTTPServer(handler, log)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "tls", certs != nil)
	if ready != nil {
		ready(ln.Addr().String())
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newHTTPServer is an HTTP server with the service's timeouts and limits.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// openStore returns the embedded store and limits, or the Redis ones (and
// their client) once Redis holds the layout this binary needs.
func openStore(ctx context.Context, cfg config, log *slog.Logger, tel *telemetry) (server.Store, server.Limiter, redis.UniversalClient, func() error, error) {
	if cfg.RedisURL == "" {
		if cfg.Replicas > 0 {
			return nil, nil, nil, nil, errors.New("configuration TOKENSVC_DURABILITY: replica:N needs TOKENSVC_REDIS_URL")
		}
		log.Warn("embedded in-memory store: tokens live in this process only and are lost when it stops; set TOKENSVC_REDIS_URL for production")
		m := store.NewMemory(nil, 0)
		return m, ratelimit.NewMemory(nil), nil, m.Close, nil
	}
	c, deps, err := newRedisClient(cfg.RedisURL, cfg.StoreTimeout, cfg.RedisCA)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("configuration TOKENSVC_REDIS_URL: %w", err)
	}
	for _, d := range deps {
		log.Warn(d.message(), "deprecated", d.old, "use", d.use)
	}
	if err := tel.instrumentRedis(c); err != nil {
		c.Close()
		return nil, nil, nil, nil, err
	}
	if err := awaitLayout(ctx, c, cfg.RedisPrefix, log); err != nil {
		c.Close()
		return nil, nil, nil, nil, err
	}
	// Rate limits live under the store's prefix: one ACL key pattern covers both.
	limits, err := redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: cfg.RedisPrefix})
	if err != nil {
		c.Close()
		return nil, nil, nil, nil, err
	}
	// WAIT gets most of the store timeout, so a slow replica is a clean 503.
	s, err := redisstore.New(c, redisstore.Options{Prefix: cfg.RedisPrefix, Replicas: cfg.Replicas, ReplicaTimeout: cfg.StoreTimeout * 3 / 4, AutoPipeline: cfg.AutoPipeline})
	if err != nil {
		c.Close()
		return nil, nil, nil, nil, err
	}
	closeAll := func() error { return errors.Join(s.Close(), c.Close()) }
	return s, ratelimit.NewShared(limits), c, closeAll, nil
}

// awaitLayout refuses to serve on a Redis of the wrong layout, and waits a
// while for one that does not answer yet (it may be starting too).
func awaitLayout(ctx context.Context, c redis.UniversalClient, prefix string, log *slog.Logger) error {
	deadline := time.Now().Add(redisWait)
	for {
		err := migrations.Check(ctx, c, prefix)
		if err == nil || errors.Is(err, migrations.ErrOutdated) || errors.Is(err, migrations.ErrTooNew) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Redis did not answer for %s: %w", redisWait, err)
		}
		log.Warn("waiting for Redis", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// redisLogger sends go-redis's messages (dial failures, pool events) to the
// service's log.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// devKey makes a random partner key for a process started without any,
// and says so loudly, once, on stderr.
func devKey(stderr io.Writer) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	key := "dev_" + base64.RawURLEncoding.EncodeToString(b)
	fmt.Fprintf(stderr, `
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! DEVELOPMENT MODE: TOKENSVC_API_KEYS is not set.
!! This process made up a partner key, valid until it exits:
!!
!!     %s
!!
!! Send it as the x-api-key header. Configure TOKENSVC_API_KEYS before
!! serving real partners.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!

`, key)
	return key, nil
}

// retryKeySync runs a failed key sync again every period until ctx ends.
func retryKeySync(ctx context.Context, srv *server.Server, every, timeout time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c, cancel := context.WithTimeout(ctx, timeout)
			if err := srv.RetryKeySync(c); err != nil {
				log.Error("could not sync the partner keys with the store; retrying", "err", err)
			}
			cancel()
		}
	}
}
