// Command tokenbench measures tokensvc against the naive token service
// anyone would write first, and against the bare-HTTP and Redis limits of
// the machine, in one run: it builds tokensvc and the naive reference
// (cmd/tokenbench/naive: Echo, one go-redis GET per verify, one SET … EX
// per mint), starts a redis-server of its own for each, starts tokensvc
// as in production (Redis store, every default on, logs at info to a
// file, metrics and the brute-force guard on), mints tokens through each
// server's own /generate, drives both with the same wrk scripts and
// redis-benchmark, and prints Markdown tables of throughput, latency, CPU
// per request and their ratios to the naive server and to GET /healthz of
// the same run, with the targets of the performance issue. Every figure is
// the median of -runs runs; ratios are taken within each run.
//
// It needs go, wrk, redis-server and redis-benchmark (Debian: wrk,
// redis-server, redis-tools) and stops everything it started, also on
// Ctrl-C, and after -timeout at the latest. -smoke is a few-second pass
// over every load that checks every figure is produced (CI runs it).
//
//	go run ./cmd/tokenbench [-runs 3] [-duration 10s] [-connections 50] [-threads 2] [-tokens 10000] [-big 1000000] [-skip-big] [-smoke]
package main

import (
	"context"
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
)

// batchSize is the number of tokens of one /verify/batch request.
const batchSize = 100

type options struct {
	runs          int
	duration      time.Duration
	warmup        time.Duration
	connections   int
	threads       int
	tokens        int
	big           int
	skipBig       bool
	smoke         bool
	timeout       time.Duration
	keep          bool
	redisRequests int
	set           settings
	profile       string // directory for CPU profiles of tokensvc, "" for none
	slice         time.Duration
	before        string // a tokensvc binary to measure beside this one, "" for none
	beforeSet     settings
	bin           string // a tokensvc binary to measure instead of building one, "" to build
	verbose       bool
}

// settings are extra TOKENSVC_ settings (or Go runtime variables) for the
// service under test, for comparing a lever on and off (-set NAME=VALUE,
// repeatable).
type settings []string

func (s *settings) String() string { return strings.Join(*s, " ") }
func (s *settings) Set(v string) error {
	name, _, ok := strings.Cut(v, "=")
	runtime := name == "GOGC" || name == "GOMEMLIMIT" || name == "GODEBUG" || name == "GOMAXPROCS"
	if !ok || !strings.HasPrefix(name, "TOKENSVC_") && !runtime {
		return fmt.Errorf("want TOKENSVC_NAME=VALUE, or GOGC, GOMEMLIMIT, GODEBUG or GOMAXPROCS=VALUE (the Go runtime's)")
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
	fs.BoolVar(&o.smoke, "smoke", false, "a short pass that checks every figure is produced (CI): 1 run of 1 s loads, 200 tokens, -big 400; overrides those flags")
	fs.Var(&o.set, "set", "TOKENSVC_NAME=VALUE for the service under test (repeatable), e.g. to compare a lever on and off")
	fs.DurationVar(&o.timeout, "timeout", 45*time.Minute, "stop everything after this long (tokens live 1 h: keep it below)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, scripts, token lists)")
	fs.StringVar(&o.profile, "profile", "", "build tokensvc with -tags pprof and write a CPU profile of it during each of its loads into this directory (the service is then not quite the release build)")
	fs.DurationVar(&o.slice, "slice", 2*time.Second, "loads compared with each other run in turns, in slices this long (whole seconds), so each sees the same share of the machine's other work")
	fs.StringVar(&o.bin, "bin", "", "measure this tokensvc binary instead of building ./cmd/tokensvc (with -before the same binary: how far apart two identical servers come out)")
	fs.Var(&o.beforeSet, "before-set", "TOKENSVC_NAME=VALUE for the -before server only (repeatable); without -before, the same binary runs beside with these settings: a lever off")
	fs.StringVar(&o.before, "before", "", "a tokensvc binary (built from an earlier commit) to run beside this one, on a Redis of its own, in the same turns: a lever's before and after in one run")
	fs.BoolVar(&o.verbose, "v", false, "print every slice's figures as it goes")
	fs.IntVar(&o.redisRequests, "redis-requests", 0, "requests of each redis-benchmark test (default: 20000 per second of -duration)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.warmup = 2 * time.Second
	if o.smoke {
		o.runs, o.duration, o.warmup, o.tokens, o.big, o.skipBig = 1, time.Second, time.Second, 2*batchSize, 4*batchSize, false
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.runs < 1, o.connections < 1, o.threads < 1, o.threads > o.connections:
		return o, errors.New("need -runs >= 1 and 1 <= -threads <= -connections")
	case o.duration < time.Second, o.slice < time.Second:
		return o, errors.New("-duration and -slice must be at least 1s")
	case o.tokens < batchSize:
		return o, fmt.Errorf("-tokens must be at least %d (one batch)", batchSize)
	case !o.skipBig && o.big <= o.tokens:
		return o, errors.New("-big must be above -tokens (or -skip-big)")
	}
	o.duration, o.slice = o.duration.Truncate(time.Second), min(o.slice.Truncate(time.Second), o.duration.Truncate(time.Second))
	if o.redisRequests <= 0 {
		o.redisRequests = 20_000 * int(o.duration/time.Second)
	}
	return o, nil
}

// bench is one benchmark session: the two servers under test and the
// temporary directory they run in.
type bench struct {
	o     options
	dir   string
	procs servers
	svc   *side  // tokensvc
	nv    *side  // the naive reference
	bf    *side  // with -before: the earlier tokensvc, else nil
	pprof string // tokensvc's pprof address with -profile
	runNo string // names the profiles: "run1", "big2"
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

	b := &bench{o: o}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	if b.dir, err = os.MkdirTemp("", "tokenbench-"); err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stderr, "tokenbench: keeping", b.dir)
	} else {
		defer os.RemoveAll(b.dir)
	}
	defer b.procs.stopAll(10 * time.Second)

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
	if o.smoke {
		if err := rep.complete(); err != nil {
			return fmt.Errorf("smoke: %w", err)
		}
		fmt.Fprintln(stderr, "tokenbench: smoke: every figure was produced")
	}
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
	defer b.svc.rc.Close()
	defer b.nv.rc.Close()

	rc := b.svc.rc
	before, err := usedMemory(ctx, rc)
	if err != nil {
		return nil, err
	}
	progress(stderr, "minting %d tokens through tokensvc's POST /generate", o.tokens)
	tokens, rate, err := b.svc.cli.preload(ctx, 0, o.tokens, o.connections)
	if err != nil {
		return nil, err
	}
	progress(stderr, "minted %d tokens at %.0f/s", len(tokens), rate)
	rep.preloadRate = rate
	after, err := usedMemory(ctx, rc)
	if err != nil {
		return nil, err
	}
	if rep.mem, err = sampleMemory(ctx, rc, b.svc.records, 1000); err != nil {
		return nil, err
	}
	rep.mem.UsedDelta, rep.mem.Tokens = after-before, len(tokens)
	rep.mem.PerTokenDelta = float64(after-before) / float64(len(tokens))
	if err := b.svc.cli.sanity(ctx, tokens, true); err != nil {
		return nil, fmt.Errorf("sanity check of tokensvc: %w", err)
	}

	progress(stderr, "minting %d tokens through the naive server's POST /generate", o.tokens)
	naiveTokens, naiveRate, err := b.nv.cli.preload(ctx, 0, o.tokens, o.connections)
	if err != nil {
		return nil, fmt.Errorf("naive server: %w", err)
	}
	progress(stderr, "minted %d tokens at %.0f/s", len(naiveTokens), naiveRate)
	if rep.naiveMem, err = sampleMemory(ctx, b.nv.rc, b.nv.records, 1000); err != nil {
		return nil, err
	}
	if err := b.nv.cli.sanity(ctx, naiveTokens, false); err != nil {
		return nil, fmt.Errorf("sanity check of the naive server: %w", err)
	}

	sides := []struct {
		sd     *side
		tokens []string
	}{{b.svc, tokens}, {b.nv, naiveTokens}}
	if b.bf != nil {
		progress(stderr, "minting %d tokens through the earlier tokensvc's POST /generate", o.tokens)
		bfTokens, _, err := b.bf.cli.preload(ctx, 0, o.tokens, o.connections)
		if err != nil {
			return nil, fmt.Errorf("earlier tokensvc: %w", err)
		}
		if err := b.bf.cli.sanity(ctx, bfTokens, true); err != nil {
			return nil, fmt.Errorf("sanity check of the earlier tokensvc: %w", err)
		}
		if rep.beforeMem, err = sampleMemory(ctx, b.bf.rc, b.bf.records, 1000); err != nil {
			return nil, err
		}
		sides = append(sides, struct {
			sd     *side
			tokens []string
		}{b.bf, bfTokens})
	}
	for _, s := range sides {
		if s.sd.keep, err = recordKeys(ctx, s.sd.rc, s.sd.records); err != nil {
			return nil, err
		}
		file := filepath.Join(b.dir, s.sd.name+"-tokens.txt")
		if err := writeTokens(file, s.tokens); err != nil {
			return nil, err
		}
		if s.sd.scripts, err = writeScripts(b.dir, s.sd.name, o, file, filepath.Join(b.dir, s.sd.name+"-tokens-big.txt"), s.sd.key); err != nil {
			return nil, err
		}
	}

	// Warm up: connections, pools, the Go runtime's heap.
	progress(stderr, "warming up")
	warm := o
	warm.duration = o.warmup
	for _, sd := range b.sides() {
		for _, w := range [][2]string{{"/", sd.scripts.verify}, {"/generate", sd.scripts.generate}} {
			if _, out, err := runWrk(ctx, warm, sd.base+w[0], w[1]); err != nil {
				return nil, fmt.Errorf("warm-up of %s: %w\n%s", sd.name, err, out)
			}
		}
		if _, err := dropOthers(ctx, sd.rc, sd.records, sd.keep); err != nil {
			return nil, err
		}
	}

	for i := range o.runs {
		progress(stderr, "run %d of %d", i+1, o.runs)
		b.runNo = fmt.Sprintf("run%d", i+1)
		r, err := b.oneRun(ctx, i)
		if err != nil {
			return nil, err
		}
		rep.runs = append(rep.runs, r)
	}

	if !o.skipBig {
		// The main figures stand on their own: a failure here is reported
		// with them, not instead of them.
		if err := b.bigRuns(ctx, stderr, tokens, rep); err != nil {
			progress(stderr, "flat-cost comparison failed: %v", err)
			rep.bigErr = err
			rep.big = nil
		}
	}
	rep.statuses, rep.abandoned, err = accessLogStatuses(filepath.Join(b.dir, "tokensvc.log"))
	if err != nil {
		return nil, err
	}
	rep.peakRSS = b.svc.proc.peakRSS()
	rep.naivePeakRSS = b.nv.proc.peakRSS()
	rep.before = b.bf != nil
	return rep, nil
}

// sides are the servers under test.
func (b *bench) sides() []*side {
	if b.bf != nil {
		return []*side{b.nv, b.svc, b.bf}
	}
	return []*side{b.nv, b.svc}
}

// member is one load of a group: a server, the wrk script and URL path,
// and where its figures go.
type member struct {
	sd     *side
	name   string
	path   string
	script string
	into   *load
}

// group runs the loads of members in turns: each in slices of -slice,
// one slice of every member after the other, until each has run for
// -duration; then each member's slices are added up. Loads compared with
// each other so meet the same share of whatever else the machine does
// meanwhile (other processes come and go by the second on a shared
// machine). Run by run, a different member goes first, and every other
// round of slices goes in the reverse order (A B C, C B A, ...), so that
// no load always follows the same other load.
func (b *bench) group(ctx context.Context, run int, members []member) error {
	parts := make([][]load, len(members))
	n := len(members)
	for slice, left := 0, b.o.duration; left > 0; slice++ {
		d := min(b.o.slice, left)
		left -= d
		for j := range members {
			if slice%2 == 1 {
				j = n - 1 - j
			}
			k := (j + run) % n
			l, err := b.phase(ctx, members[k], d, slice)
			if err != nil {
				return err
			}
			if b.o.verbose {
				progress(os.Stderr, "  slice %d: %s %s: %.0f req/s, p99 %.2f ms, %.1f µs/req + Redis %.1f", slice+1, members[k].sd.name, members[k].name,
					l.RPS, ms(l.P99), cpuPerReq(l.SvcCPU, l.Requests), cpuPerReq(l.RedisCPU, l.Requests))
			}
			parts[k] = append(parts[k], l)
		}
	}
	for k, m := range members {
		*m.into = merge(parts[k])
	}
	return nil
}

// phase runs one slice of a member's load (d long) and charges the CPU
// its server and that server's Redis used meanwhile to it, and notes the
// server's largest resident set.
func (b *bench) phase(ctx context.Context, m member, d time.Duration, slice int) (load, error) {
	sd := m.sd
	if err := sd.rc.ConfigResetStat(ctx).Err(); err != nil {
		return load{}, err
	}
	svc0, red0 := sd.proc.cpu(), sd.redis.cpu()
	rss := sd.proc.sampleRSS(50 * time.Millisecond)
	profiled := make(chan error, 1)
	if b.pprof != "" && sd == b.svc && d >= 2*time.Second {
		go func() { profiled <- b.cpuProfile(ctx, m.name, d, slice) }()
	} else {
		profiled <- nil
	}
	o := b.o
	o.duration = d
	l, _, err := runWrk(ctx, o, sd.base+m.path, m.script)
	l.RSS = rss()
	if perr := <-profiled; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return l, fmt.Errorf("%s %s: %w", sd.name, m.name, err)
	}
	l.SvcCPU, l.RedisCPU = sd.proc.cpu()-svc0, sd.redis.cpu()-red0
	if l.Cmds, err = commandStats(ctx, sd.rc); err != nil {
		return l, err
	}
	if l.RedisReads, l.RedisCommands, err = redisIO(ctx, sd.rc); err != nil {
		return l, err
	}
	if sd.proc.exited() {
		return l, fmt.Errorf("%s %s: %s exited; see its log", sd.name, m.name, sd.name)
	}
	return l, nil
}

// oneRun measures every load once, in three groups of loads taking
// turns: /healthz and both servers' /verify; the batches; both servers'
// /generate. (A batch leaves its server garbage to collect: a /verify
// taking turns with it would pay for it when it follows its own
// server's batch.)
func (b *bench) oneRun(ctx context.Context, i int) (runResult, error) {
	var r runResult
	reads := []member{
		{b.svc, "GET /healthz", "/healthz", b.svc.scripts.healthz, &r.healthz},
		{b.nv, "GET /verify", "/", b.nv.scripts.verify, &r.naiveVerify},
		{b.svc, "GET /verify", "/", b.svc.scripts.verify, &r.verify},
	}
	batches := []member{{b.svc, "POST /verify/batch", "/", b.svc.scripts.batch, &r.batch}}
	mints := []member{
		{b.nv, "POST /generate", "/generate", b.nv.scripts.generate, &r.naiveGenerate},
		{b.svc, "POST /generate", "/generate", b.svc.scripts.generate, &r.generate},
	}
	if b.bf != nil {
		reads = append(reads, member{b.bf, "GET /verify", "/", b.bf.scripts.verify, &r.beforeVerify})
		batches = append(batches, member{b.bf, "POST /verify/batch", "/", b.bf.scripts.batch, &r.beforeBatch})
		mints = append(mints, member{b.bf, "POST /generate", "/generate", b.bf.scripts.generate, &r.beforeGenerate})
	}
	for _, g := range [][]member{reads, batches, mints} {
		if err := b.group(ctx, i, g); err != nil {
			return r, err
		}
	}
	for _, sd := range b.sides() {
		if _, err := dropOthers(ctx, sd.rc, sd.records, sd.keep); err != nil {
			return r, err
		}
	}
	var err error
	if r.redisGet, r.redisSet, err = redisBench(ctx, b.o, b.svc.rport, b.svc.redis); err != nil {
		return r, err
	}
	return r, nil
}

// bigRuns mints tokens up to -big and measures /verify over all of them,
// each run next to a /healthz and a naive /verify of its own.
func (b *bench) bigRuns(ctx context.Context, stderr io.Writer, small []string, rep *report) error {
	o := b.o
	rc := b.svc.rc
	extra := o.big - o.tokens
	before, err := usedMemory(ctx, rc)
	if err != nil {
		return err
	}
	progress(stderr, "minting %d more tokens (to %d live) through POST /generate", extra, o.big)
	more, rate, err := b.svc.cli.preload(ctx, o.tokens, extra, o.connections)
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
	if err := writeTokens(filepath.Join(b.dir, b.svc.name+"-tokens-big.txt"), all); err != nil {
		return err
	}
	rep.bigLive = int64(len(all))
	for i := range o.runs {
		progress(stderr, "big run %d of %d", i+1, o.runs)
		b.runNo = fmt.Sprintf("big%d", i+1)
		var r bigResult
		if err := b.group(ctx, i, []member{
			{b.svc, "GET /healthz", "/healthz", b.svc.scripts.healthz, &r.healthz},
			{b.nv, "GET /verify", "/", b.nv.scripts.verify, &r.naiveVerify},
			{b.svc, "GET /verify (big)", "/", b.svc.scripts.verifyBig, &r.verify},
		}); err != nil {
			return err
		}
		rep.big = append(rep.big, r)
	}
	return nil
}

// cpuProfile fetches a CPU profile of tokensvc over the middle of one
// slice of a load (d long: from half a second in, d less a second) into
// -profile.
func (b *bench) cpuProfile(ctx context.Context, load string, d time.Duration, slice int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(500 * time.Millisecond):
	}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.pprof, int((d-time.Second)/time.Second))
	c := newClient("", "", 1)
	c.hc.Timeout = 0 // the profile takes as long as it asks for
	status, body, err := c.do(ctx, "GET", url, "")
	if err == nil && status != 200 {
		err = fmt.Errorf("answered %d: %s", status, body)
	}
	if err != nil {
		return fmt.Errorf("CPU profile of %s: %w", load, err)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(load))
	return os.WriteFile(filepath.Join(b.o.profile, fmt.Sprintf("tokensvc-%s-%s-%d.pprof", b.runNo, strings.Trim(name, "-"), slice)), body, 0o644)
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", errors.New("run tokenbench inside the tokensvc module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}
