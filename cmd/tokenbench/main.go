// Command tokenbench measures tokensvc against the bare-HTTP and Redis
// limits of the machine it runs on, in one run: it builds tokensvc, starts
// its own redis-server and tokensvc (Redis store, production settings) on
// loopback, mints tokens through the API, drives load with wrk and
// redis-benchmark, and prints a Markdown table of throughput, latency and
// their ratios to GET /healthz of the same run, with the targets of the
// performance issue. Every figure is the median of -runs runs.
//
// It needs go, wrk, redis-server and redis-benchmark (Debian: wrk,
// redis-server, redis-tools) and stops everything it started, also on
// Ctrl-C, and after -timeout at the latest.
//
//	go run ./cmd/tokenbench [-runs 3] [-duration 10s] [-connections 50] [-threads 2] [-tokens 10000] [-big 1000000] [-skip-big]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/store/redisstore"
)

// batchSize is the number of tokens of one /verify/batch request.
const batchSize = 100

type options struct {
	runs          int
	duration      time.Duration
	connections   int
	threads       int
	tokens        int
	big           int
	skipBig       bool
	timeout       time.Duration
	keep          bool
	redisRequests int
	set           settings
}

// settings are extra TOKENSVC_ settings for the service under test, for
// comparing a lever on and off (-set NAME=VALUE, repeatable).
type settings []string

func (s *settings) String() string { return strings.Join(*s, " ") }
func (s *settings) Set(v string) error {
	if !strings.HasPrefix(v, "TOKENSVC_") || !strings.Contains(v, "=") {
		return fmt.Errorf("want TOKENSVC_NAME=VALUE")
	}
	*s = append(*s, v)
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once; the servers die with us (Pdeathsig)
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tokenbench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("tokenbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.runs, "runs", 3, "repetitions; every figure is the median")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk load (whole seconds)")
	fs.IntVar(&o.connections, "connections", 50, "concurrent connections of wrk and redis-benchmark")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads")
	fs.IntVar(&o.tokens, "tokens", 10_000, "live tokens during the main loads")
	fs.IntVar(&o.big, "big", 1_000_000, "live tokens of the flat-cost comparison")
	fs.BoolVar(&o.skipBig, "skip-big", false, "skip the comparison with -big live tokens")
	fs.Var(&o.set, "set", "TOKENSVC_NAME=VALUE for the service under test (repeatable), e.g. to compare a lever on and off")
	fs.DurationVar(&o.timeout, "timeout", 45*time.Minute, "stop everything after this long (tokens live 1 h: keep it below)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, scripts, token lists)")
	fs.IntVar(&o.redisRequests, "redis-requests", 0, "requests of each redis-benchmark test (default: 20000 per second of -duration)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.runs < 1, o.connections < 1, o.threads < 1, o.threads > o.connections:
		return o, errors.New("need -runs >= 1 and 1 <= -threads <= -connections")
	case o.duration < time.Second:
		return o, errors.New("-duration must be at least 1s")
	case o.tokens < batchSize:
		return o, fmt.Errorf("-tokens must be at least %d (one batch)", batchSize)
	case !o.skipBig && o.big <= o.tokens:
		return o, errors.New("-big must be above -tokens (or -skip-big)")
	}
	o.duration = o.duration.Truncate(time.Second)
	if o.redisRequests <= 0 {
		o.redisRequests = 20_000 * int(o.duration/time.Second)
	}
	return o, nil
}

// bench is one benchmark session: the processes and what they need.
type bench struct {
	o       options
	dir     string
	svcs    servers
	redis   *server
	svc     *server
	rport   int
	base    string
	key     string
	prefix  string
	cli     *client
	rc      *redis.Client // tokenbench's own connection to Redis
	scripts scripts
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, tool := range []string{"go", "wrk", "redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not on PATH (Debian: apt-get install wrk redis-server redis-tools)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	started := time.Now()
	facts := machineFacts(ctx)

	b := &bench{o: o, prefix: redisstore.DefaultPrefix} // tokensvc runs with the default prefix
	if b.dir, err = os.MkdirTemp("", "tokenbench-"); err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stderr, "tokenbench: keeping", b.dir)
	} else {
		defer os.RemoveAll(b.dir)
	}
	defer b.svcs.stopAll(10 * time.Second)

	rep, err := b.measure(ctx, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (stopped after %s; -timeout is %s)", err, time.Since(started).Round(time.Second), o.timeout)
		}
		return err
	}
	rep.facts = facts
	rep.elapsed = time.Since(started)
	rep.print(stdout)
	return nil
}

func progress(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "tokenbench: "+format+"\n", args...)
}

// measure sets everything up and runs every load.
func (b *bench) measure(ctx context.Context, stderr io.Writer) (*report, error) {
	o := b.o
	rep := &report{o: o}
	if err := b.startAll(ctx, stderr); err != nil {
		return nil, err
	}
	rc := redisClient(b.rport)
	defer rc.Close()
	b.rc = rc

	before, err := usedMemory(ctx, rc)
	if err != nil {
		return nil, err
	}
	progress(stderr, "minting %d tokens through POST /generate", o.tokens)
	tokens, rate, err := b.cli.preload(ctx, 0, o.tokens, o.connections)
	if err != nil {
		return nil, err
	}
	progress(stderr, "minted %d tokens at %.0f/s", len(tokens), rate)
	rep.preloadRate = rate
	after, err := usedMemory(ctx, rc)
	if err != nil {
		return nil, err
	}
	if rep.mem, err = sampleMemory(ctx, rc, b.prefix, 1000); err != nil {
		return nil, err
	}
	rep.mem.UsedDelta, rep.mem.Tokens = after-before, len(tokens)
	rep.mem.PerTokenDelta = float64(after-before) / float64(len(tokens))

	if err := b.cli.sanity(ctx, tokens); err != nil {
		return nil, fmt.Errorf("sanity check: %w", err)
	}
	keep, err := recordKeys(ctx, rc, b.prefix)
	if err != nil {
		return nil, err
	}
	smallFile, bigFile := filepath.Join(b.dir, "tokens.txt"), filepath.Join(b.dir, "tokens-big.txt")
	if err := writeTokens(smallFile, tokens); err != nil {
		return nil, err
	}
	if b.scripts, err = writeScripts(b.dir, o, smallFile, bigFile, b.key); err != nil {
		return nil, err
	}

	// Warm up: connections, pools, the Go runtime's heap.
	progress(stderr, "warming up")
	warm := o
	warm.duration = 2 * time.Second
	for _, w := range [][2]string{{"/", b.scripts.verify}, {"/generate", b.scripts.generate}} {
		if _, out, err := runWrk(ctx, warm, b.base+w[0], w[1]); err != nil {
			return nil, fmt.Errorf("warm-up: %w\n%s", err, out)
		}
	}
	if _, err := dropOthers(ctx, rc, b.prefix, keep); err != nil {
		return nil, err
	}

	for i := range o.runs {
		progress(stderr, "run %d of %d", i+1, o.runs)
		r, err := b.oneRun(ctx, rc, keep)
		if err != nil {
			return nil, err
		}
		rep.runs = append(rep.runs, r)
	}

	if !o.skipBig {
		// The main figures stand on their own: a failure here is reported
		// with them, not instead of them.
		if err := b.bigRuns(ctx, stderr, rc, tokens, bigFile, rep); err != nil {
			progress(stderr, "flat-cost comparison failed: %v", err)
			rep.bigErr = err
			rep.big = nil
		}
	}
	rep.statuses, rep.abandoned, err = accessLogStatuses(filepath.Join(b.dir, "tokensvc.log"))
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// phase runs one wrk load and charges the CPU the service and Redis used
// meanwhile to it.
func (b *bench) phase(ctx context.Context, name, path, script string) (load, error) {
	if err := b.rc.ConfigResetStat(ctx).Err(); err != nil {
		return load{}, err
	}
	svc0, red0 := b.svc.cpu(), b.redis.cpu()
	l, _, err := runWrk(ctx, b.o, b.base+path, script)
	if err != nil {
		return l, fmt.Errorf("%s: %w", name, err)
	}
	l.SvcCPU, l.RedisCPU = b.svc.cpu()-svc0, b.redis.cpu()-red0
	if l.Cmds, err = commandStats(ctx, b.rc); err != nil {
		return l, err
	}
	if b.svc.exited() {
		return l, fmt.Errorf("%s: tokensvc exited; see its log", name)
	}
	return l, nil
}

// oneRun measures every load once.
func (b *bench) oneRun(ctx context.Context, rc *redis.Client, keep map[string]struct{}) (runResult, error) {
	var r runResult
	var err error
	if r.healthz, err = b.phase(ctx, "GET /healthz", "/healthz", ""); err != nil {
		return r, err
	}
	if r.verify, err = b.phase(ctx, "GET /verify", "/", b.scripts.verify); err != nil {
		return r, err
	}
	if r.batch, err = b.phase(ctx, "POST /verify/batch", "/", b.scripts.batch); err != nil {
		return r, err
	}
	if r.generate, err = b.phase(ctx, "POST /generate", "/generate", b.scripts.generate); err != nil {
		return r, err
	}
	if _, err := dropOthers(ctx, rc, b.prefix, keep); err != nil {
		return r, err
	}
	if r.redisGet, r.redisSet, err = redisBench(ctx, b.o, b.rport, b.redis); err != nil {
		return r, err
	}
	return r, nil
}

// bigRuns mints tokens up to -big and measures /verify over all of them,
// each run next to a /healthz of its own.
func (b *bench) bigRuns(ctx context.Context, stderr io.Writer, rc *redis.Client, small []string, bigFile string, rep *report) error {
	o := b.o
	extra := o.big - o.tokens
	before, err := usedMemory(ctx, rc)
	if err != nil {
		return err
	}
	progress(stderr, "minting %d more tokens (to %d live) through POST /generate", extra, o.big)
	more, rate, err := b.cli.preload(ctx, o.tokens, extra, o.connections)
	if err != nil {
		return err
	}
	progress(stderr, "minted %d tokens at %.0f/s", extra, rate)
	after, err := usedMemory(ctx, rc)
	if err != nil {
		return err
	}
	rep.bigMem = &memory{UsedDelta: after - before, Tokens: extra, PerTokenDelta: float64(after-before) / float64(extra)}
	rep.bigRate = rate
	all := append(append([]string(nil), small...), more...)
	if err := writeTokens(bigFile, all); err != nil {
		return err
	}
	if rep.bigLive, err = rc.DBSize(ctx).Result(); err != nil {
		return err
	}
	for i := range o.runs {
		progress(stderr, "big run %d of %d", i+1, o.runs)
		var r bigResult
		if r.healthz, err = b.phase(ctx, "GET /healthz", "/healthz", ""); err != nil {
			return err
		}
		if r.verify, err = b.phase(ctx, "GET /verify (big)", "/", b.scripts.verifyBig); err != nil {
			return err
		}
		rep.big = append(rep.big, r)
	}
	return nil
}

// startAll builds tokensvc and starts Redis and tokensvc on loopback.
func (b *bench) startAll(ctx context.Context, stderr io.Writer) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	bin := filepath.Join(b.dir, "tokensvc")
	progress(stderr, "building tokensvc")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tokensvc")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/tokensvc: %w\n%s", err, out)
	}

	if b.rport, err = freePort(); err != nil {
		return err
	}
	progress(stderr, "starting redis-server on 127.0.0.1:%d", b.rport)
	redisCmd := exec.Command("redis-server",
		"--port", fmt.Sprint(b.rport), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--daemonize", "no", "--dir", b.dir, "--logfile", filepath.Join(b.dir, "redis.log"),
		"--save", "", "--appendonly", "no")
	if b.redis, err = b.svcs.start("redis-server", redisCmd); err != nil {
		return err
	}
	rc := redisClient(b.rport)
	defer rc.Close()
	if err := waitFor(ctx, b.redis, 15*time.Second, "redis-server", func(ctx context.Context) error { return rc.Ping(ctx).Err() }); err != nil {
		return err
	}

	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	b.key = "pk_bench_" + hex.EncodeToString(secret)
	admin := make([]byte, 16)
	idem := make([]byte, 32)
	_, _ = rand.Read(admin)
	_, _ = rand.Read(idem)
	port, err := freePort()
	if err != nil {
		return err
	}
	b.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	// Production settings: Redis store, the partner key in its hashed
	// form, logs at info, the brute-force guard at its default, the admin
	// API and Idempotency-Key on. Defaults are left unset on purpose.
	env := append(cleanEnv(),
		"TOKENSVC_ADDR=127.0.0.1:"+fmt.Sprint(port),
		"TOKENSVC_REDIS_URL="+fmt.Sprintf("redis://127.0.0.1:%d/0", b.rport),
		"TOKENSVC_API_KEYS="+fmt.Sprintf("- id: bench-partner\n  server_secret: %s\n", keys.HashSecret(b.key)),
		"TOKENSVC_LOG_LEVEL=info",
		"TOKENSVC_ADMIN_TOKEN="+hex.EncodeToString(admin),
		"TOKENSVC_IDEMPOTENCY_SECRET="+hex.EncodeToString(idem),
		"TOKENSVC_SHUTDOWN_TIMEOUT=5s",
	)
	env = append(env, b.o.set...)
	migrate := exec.CommandContext(ctx, bin, "migrate")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		return fmt.Errorf("tokensvc migrate: %w\n%s", err, out)
	}
	logFile, err := os.Create(filepath.Join(b.dir, "tokensvc.log"))
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	svcCmd := exec.Command(bin, "serve")
	svcCmd.Env, svcCmd.Stdout, svcCmd.Stderr = env, logFile, logFile
	progress(stderr, "starting tokensvc on %s", b.base)
	if b.svc, err = b.svcs.start("tokensvc", svcCmd); err != nil {
		return err
	}
	b.cli = newClient(b.base, b.key, b.o.connections)
	return waitFor(ctx, b.svc, 30*time.Second, "tokensvc /readyz", func(ctx context.Context) error {
		status, body, err := b.cli.do(ctx, "GET", "/readyz", "")
		if err == nil && status != 200 {
			err = fmt.Errorf("/readyz answered %d: %s", status, body)
		}
		return err
	})
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

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", errors.New("run tokenbench inside the tokensvc module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}
