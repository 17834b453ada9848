package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/store/redisstore"
)

// side is one server under test, on a redis-server of its own: tokensvc,
// or the naive reference.
type side struct {
	name    string  // "tokensvc" or "naive": names its files too
	proc    *server // the server's process
	redis   *server
	rport   int
	rc      *redis.Client // tokenbench's own connection to the side's Redis
	base    string
	key     string    // the partner key its /generate wants
	records recordsOf // which Redis keys are its token records
	cli     *client
	scripts scripts
	keep    map[string]struct{} // the record keys of the preloaded tokens
}

// recordsOf names a side's token records: a SCAN pattern, and the test a
// key it finds must pass.
type recordsOf struct {
	pattern string
	is      func(key string) bool
}

// tokensvcPrefix is the prefix tokensvc runs with: its default, unset.
const tokensvcPrefix = redisstore.DefaultPrefix

var (
	tokensvcRecords = recordsOf{tokensvcPrefix + "*", func(k string) bool { return isRecordKey(tokensvcPrefix, k) }}
	// The naive server stores each token in clear under t:<token>.
	naiveRecords = recordsOf{"t:*", func(k string) bool { return strings.HasPrefix(k, "t:") }}
)

// startAll builds tokensvc and the naive server and starts each on
// loopback, on a redis-server of its own.
func (b *bench) startAll(ctx context.Context, stderr io.Writer) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	for _, pkg := range []string{"./cmd/tokensvc", "./cmd/tokenbench/naive"} {
		if pkg == "./cmd/tokensvc" && b.o.bin != "" {
			continue
		}
		progress(stderr, "building %s", pkg)
		args := []string{"build", "-o", filepath.Join(b.dir, filepath.Base(pkg))}
		if b.o.profile != "" && pkg == "./cmd/tokensvc" {
			args = append(args, "-tags", "pprof")
		}
		build := exec.CommandContext(ctx, "go", append(args, pkg)...)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	b.svc = &side{name: "tokensvc", records: tokensvcRecords}
	b.nv = &side{name: "naive", records: naiveRecords}
	if b.o.before != "" || len(b.o.beforeSet) > 0 {
		b.bf = &side{name: "before", records: tokensvcRecords}
	}
	for _, sd := range b.sides() {
		if err := b.startRedis(ctx, stderr, sd); err != nil {
			return err
		}
	}
	bin := filepath.Join(b.dir, "tokensvc")
	if b.o.bin != "" {
		if bin, err = filepath.Abs(b.o.bin); err != nil {
			return err
		}
	}
	if err := b.startTokensvc(ctx, stderr, b.svc, bin); err != nil {
		return err
	}
	if b.bf != nil {
		before := bin // -before-set alone: the same binary with other settings
		if b.o.before != "" {
			if before, err = filepath.Abs(b.o.before); err != nil {
				return err
			}
		}
		if err := b.startTokensvc(ctx, stderr, b.bf, before); err != nil {
			return fmt.Errorf("-before %s: %w", before, err)
		}
	}
	return b.startNaive(ctx, stderr)
}

// startRedis starts sd's redis-server, without persistence.
func (b *bench) startRedis(ctx context.Context, stderr io.Writer, sd *side) error {
	var err error
	if sd.rport, err = freePort(); err != nil {
		return err
	}
	progress(stderr, "starting redis-server for %s on 127.0.0.1:%d", sd.name, sd.rport)
	dir := filepath.Join(b.dir, sd.name+"-redis")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	cmd := exec.Command("redis-server",
		"--port", fmt.Sprint(sd.rport), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--daemonize", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--save", "", "--appendonly", "no")
	if sd.redis, err = b.procs.start("redis-server ("+sd.name+")", cmd); err != nil {
		return err
	}
	sd.rc = redisClient(sd.rport)
	return waitFor(ctx, sd.redis, 15*time.Second, "redis-server", func(ctx context.Context) error { return sd.rc.Ping(ctx).Err() })
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startTokensvc migrates sd's Redis and starts the tokensvc binary bin on
// it as in production.
func (b *bench) startTokensvc(ctx context.Context, stderr io.Writer, sd *side, bin string) error {
	sd.key = "pk_bench_" + randomHex(24)
	port, err := freePort()
	if err != nil {
		return err
	}
	sd.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	// Production settings: Redis store, the partner key in its hashed
	// form, logs at info to a file, metrics on /metrics, the brute-force
	// guard at its default, the admin API and Idempotency-Key on.
	// Defaults are left unset on purpose.
	env := append(cleanEnv(),
		"TOKENSVC_ADDR=127.0.0.1:"+fmt.Sprint(port),
		"TOKENSVC_REDIS_URL="+fmt.Sprintf("redis://127.0.0.1:%d/0", sd.rport),
		"TOKENSVC_API_KEYS="+fmt.Sprintf("- id: bench-partner\n  server_secret: %s\n", keys.HashSecret(sd.key)),
		"TOKENSVC_LOG_LEVEL=info",
		"TOKENSVC_ADMIN_TOKEN="+randomHex(16),
		"TOKENSVC_IDEMPOTENCY_SECRET="+randomHex(32),
		"TOKENSVC_SHUTDOWN_TIMEOUT=5s",
	)
	if b.o.profile != "" && sd == b.svc {
		pport, err := freePort()
		if err != nil {
			return err
		}
		b.pprof = fmt.Sprintf("127.0.0.1:%d", pport)
		env = append(env, "TOKENSVC_PPROF_ADDR="+b.pprof)
	}
	if sd == b.bf {
		env = append(env, b.o.beforeSet...)
	} else {
		env = append(env, b.o.set...)
	}
	migrate := exec.CommandContext(ctx, bin, "migrate")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		return fmt.Errorf("tokensvc migrate: %w\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	progress(stderr, "starting %s (%s) on %s", sd.name, bin, sd.base)
	if err := b.startServer(sd, cmd); err != nil {
		return err
	}
	return waitFor(ctx, sd.proc, 30*time.Second, sd.name+" /readyz", func(ctx context.Context) error {
		status, body, err := sd.cli.do(ctx, "GET", "/readyz", "")
		if err == nil && status != 200 {
			err = fmt.Errorf("/readyz answered %d: %s", status, body)
		}
		return err
	})
}

// startNaive starts the naive reference server.
func (b *bench) startNaive(ctx context.Context, stderr io.Writer) error {
	sd := b.nv
	sd.key = "pk_naive_" + randomHex(24)
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sd.base = "http://" + addr
	cmd := exec.Command(filepath.Join(b.dir, "naive"), "-addr", addr, "-redis", fmt.Sprintf("127.0.0.1:%d", sd.rport), "-key", sd.key)
	cmd.Env = cleanEnv()
	progress(stderr, "starting the naive server on %s", sd.base)
	if err := b.startServer(sd, cmd); err != nil {
		return err
	}
	return waitFor(ctx, sd.proc, 30*time.Second, "naive /healthz", func(ctx context.Context) error {
		status, body, err := sd.cli.do(ctx, "GET", "/healthz", "")
		if err == nil && status != 200 {
			err = fmt.Errorf("/healthz answered %d: %s", status, body)
		}
		return err
	})
}

// startServer starts sd's server with its output in <name>.log.
func (b *bench) startServer(sd *side, cmd *exec.Cmd) error {
	logFile, err := os.Create(filepath.Join(b.dir, sd.name+".log"))
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if sd.proc, err = b.procs.start(sd.name, cmd); err != nil {
		return err
	}
	sd.cli = newClient(sd.base, sd.key, b.o.connections)
	return nil
}

// cleanEnv is this process's environment without TOKENSVC_ settings, so
// the service runs with its defaults plus what tokenbench sets.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKENSVC_") {
			env = append(env, kv)
		}
	}
	return env
}
