package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

func redisClient(port int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), ReadTimeout: 30 * time.Second})
}

// runResult is one run of every load.
type runResult struct {
	healthz, verify, naiveVerify, batch, generate, naiveGenerate, redisGet, redisSet load
	// With -before: the earlier tokensvc's loads, in the same turns.
	beforeVerify, beforeBatch, beforeGenerate load
}

// bigResult is one run of the flat-cost comparison.
type bigResult struct{ healthz, verify, naiveVerify load }

type report struct {
	o            options
	facts        []string
	elapsed      time.Duration
	preloadRate  float64
	mem          memory
	naiveMem     memory
	beforeMem    memory
	before       bool // an earlier tokensvc ran beside (-before)
	runs         []runResult
	big          []bigResult
	bigMem       *memory
	bigRate      float64
	bigLive      int64
	bigErr       error
	statuses     map[string]int
	abandoned    int
	peakRSS      int64 // tokensvc's VmHWM at the end: minting the big set included
	naivePeakRSS int64
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// med is the median of f over the runs.
func med[T any](runs []T, f func(T) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	return median(v)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// target is one goal of the issue and how the runs fare against it.
type target struct {
	what     string
	measured float64
	want     float64
	atLeast  bool // measured must be >= want; else <= want
	unit     string
}

func (t target) met() bool {
	if t.atLeast {
		return t.measured >= t.want
	}
	return t.measured <= t.want
}

// verdict says whether t is met, and by how much it is missed.
func (t target) verdict() string {
	if t.met() {
		return "met"
	}
	if t.unit == "%" {
		return fmt.Sprintf("**missed**: %.1f points over", t.measured-t.want)
	}
	if t.atLeast {
		return fmt.Sprintf("**missed**: %.0f%% short (needs %.2f× more)", 100*(1-t.measured/t.want), t.want/t.measured)
	}
	return fmt.Sprintf("**missed**: %.0f%% over", 100*(t.measured/t.want-1))
}

func (t target) String() string {
	op := "≤"
	if t.atLeast {
		op = "≥"
	}
	return fmt.Sprintf("| %s | %s | %s %s | %s |", t.what, fmtUnit(t.measured, t.unit), op, fmtUnit(t.want, t.unit), t.verdict())
}

func fmtUnit(v float64, unit string) string {
	switch unit {
	case "×":
		return fmt.Sprintf("%.2f×", v)
	case "B":
		return fmt.Sprintf("%.0f B", v)
	case "%":
		return fmt.Sprintf("%.1f%%", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// row is one line of the main table: a load of one run, the load of the
// naive server it is compared with (nil: none), and by how much the
// load's requests outnumber the naive one's in tokens (a batch).
type row struct {
	name   string
	get    func(runResult) load
	naive  func(runResult) load
	tokens float64
	http   bool
}

func (rep *report) rows() []row {
	nv := func(r runResult) load { return r.naiveVerify }
	return []row{
		{"`GET /healthz` (tokensvc, bare HTTP)", func(r runResult) load { return r.healthz }, nil, 1, true},
		{"naive `GET /verify`", nv, nil, 1, true},
		{"tokensvc `GET /verify`", func(r runResult) load { return r.verify }, nv, 1, true},
		{fmt.Sprintf("naive `POST /generate` (%d-byte bundle)", bundleBytes), func(r runResult) load { return r.naiveGenerate }, nil, 1, true},
		{fmt.Sprintf("tokensvc `POST /generate` (%d-byte bundle)", bundleBytes), func(r runResult) load { return r.generate }, func(r runResult) load { return r.naiveGenerate }, 1, true},
		{fmt.Sprintf("tokensvc `POST /verify/batch` (%d tokens; × naive in tokens/s)", batchSize), func(r runResult) load { return r.batch }, nv, batchSize, true},
		{"redis-benchmark `GET` (tokensvc's Redis)", func(r runResult) load { return r.redisGet }, nil, 1, false},
		{"redis-benchmark `SET` (tokensvc's Redis)", func(r runResult) load { return r.redisSet }, nil, 1, false},
	}
}

// targets are the goals of the issue, measured.
func (rep *report) targets() []target {
	o := rep.o
	ts := []target{
		{"`/verify` req/s × naive `/verify`", med(rep.runs, func(r runResult) float64 { return ratio(r.verify.RPS, r.naiveVerify.RPS) }), 1.25, true, "×"},
		{"`/verify` p99 × naive `/verify` p99", med(rep.runs, func(r runResult) float64 { return ratio(ms(r.verify.P99), ms(r.naiveVerify.P99)) }), 1, false, "×"},
		{"`/generate` req/s × naive `/generate`", med(rep.runs, func(r runResult) float64 { return ratio(r.generate.RPS, r.naiveGenerate.RPS) }), 1.1, true, "×"},
		{"`/verify/batch` tokens/s × single `/verify` tokens/s", med(rep.runs, func(r runResult) float64 { return ratio(batchSize*r.batch.RPS, r.verify.RPS) }), 10, true, "×"},
	}
	if len(rep.big) > 0 {
		small := med(rep.runs, func(r runResult) float64 { return ratio(r.verify.RPS, r.naiveVerify.RPS) })
		big := med(rep.big, func(r bigResult) float64 { return ratio(r.verify.RPS, r.naiveVerify.RPS) })
		ts = append(ts, target{fmt.Sprintf("`/verify` with %d live tokens vs %d: drop of × naive", rep.bigLive, o.tokens), 100 * (small - big) / small, 5, false, "%"})
	}
	ts = append(ts, target{"Redis memory per token: its record (`MEMORY USAGE`, mean)", rep.mem.Usage, 250, false, "B"})
	if rep.mem.WithHistory > 0 {
		ts = append(ts, target{"Redis memory per token: its record and its history (`MEMORY USAGE`, mean)", rep.mem.Usage + rep.mem.HistoryUsage, 250, false, "B"})
	}
	return ts
}

func (rep *report) print(w io.Writer) {
	o := rep.o
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("## tokenbench")
	p("")
	for _, f := range rep.facts {
		p("- %s", f)
	}
	p("- settings: %d runs × %s per load, %d connections, %d wrk threads, %d live tokens with %d-byte bundles; total time %s",
		o.runs, o.duration, o.connections, o.threads, o.tokens, bundleBytes, rep.elapsed.Round(time.Second))
	set := ""
	if len(o.set) > 0 {
		set = "; with " + o.set.String()
	}
	p("- tokensvc: on its own redis-server (loopback, no persistence), `tokensvc migrate` run first, one partner key (sha256 form), access log at info to a file, metrics on (`/metrics`), brute-force guard at its default (100 failures/m per address), admin API and Idempotency-Key on, every other setting at its default%s", set)
	p("- naive: `cmd/tokenbench/naive` (Echo v4, go-redis v9 defaults, one `GET` per verify, one `SET … EX` per mint, constant-time key check, nothing else) on a redis-server of its own; its tokens minted through its own `/generate`; the same wrk scripts")
	p("")
	p("Medians of %d runs. Ratios are taken within each run, then the median of those; × naive compares with the naive server's same load of the same run. Loads compared with each other run in turns, %s slices of each in a row (`/healthz` and both servers' `/verify`; the batches; both servers' `/generate`), and each load's slices are added up (latency percentiles from the merged distributions).", len(rep.runs), o.slice)
	p("")
	p("| load | req/s | × naive | × healthz | p50 ms | p99 ms | p99 × naive | p99 × healthz | server CPU µs/req | its Redis CPU µs/req | server peak RSS MiB | non-2xx |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	h := func(r runResult) load { return r.healthz }
	for _, rw := range rep.rows() {
		rps := med(rep.runs, func(r runResult) float64 { return rw.get(r).RPS })
		x := med(rep.runs, func(r runResult) float64 { return ratio(rw.get(r).RPS, h(r).RPS) })
		p50 := med(rep.runs, func(r runResult) float64 { return ms(rw.get(r).P50) })
		p99 := med(rep.runs, func(r runResult) float64 { return ms(rw.get(r).P99) })
		p99x := med(rep.runs, func(r runResult) float64 { return ratio(ms(rw.get(r).P99), ms(h(r).P99)) })
		xn, p99n := "–", "–"
		if rw.naive != nil {
			xn = fmt.Sprintf("%.2f", med(rep.runs, func(r runResult) float64 { return ratio(rw.tokens*rw.get(r).RPS, rw.naive(r).RPS) }))
			p99n = fmt.Sprintf("%.2f", med(rep.runs, func(r runResult) float64 { return ratio(ms(rw.get(r).P99), ms(rw.naive(r).P99)) }))
		}
		svc, red, rss, failed := "–", "–", "–", "–"
		if rw.http {
			svc = fmt.Sprintf("%.1f", med(rep.runs, func(r runResult) float64 { l := rw.get(r); return cpuPerReq(l.SvcCPU, l.Requests) }))
			red = fmt.Sprintf("%.1f", med(rep.runs, func(r runResult) float64 { l := rw.get(r); return cpuPerReq(l.RedisCPU, l.Requests) }))
			rss = fmt.Sprintf("%.1f", med(rep.runs, func(r runResult) float64 { return mib(rw.get(r).RSS) }))
			failed = fmt.Sprintf("%.0f", med(rep.runs, func(r runResult) float64 { return float64(rw.get(r).Failed) }))
		} else {
			n := float64(o.redisRequests)
			red = fmt.Sprintf("%.1f", med(rep.runs, func(r runResult) float64 { return float64(rw.get(r).RedisCPU.Microseconds()) / n }))
		}
		p("| %s | %.0f | %s | %.2f | %.2f | %.2f | %s | %.2f | %s | %s | %s | %s |", rw.name, rps, xn, x, p50, p99, p99n, p99x, svc, red, rss, failed)
	}
	if rep.before {
		rep.printBefore(p)
	}
	p("")
	p("Server peak RSS is the largest resident set sampled every 50 ms during the load. tokensvc's VmHWM at the end of the whole benchmark (minting included): %.1f MiB; the naive server's: %.1f MiB.", mib(rep.peakRSS), mib(rep.naivePeakRSS))
	p("")
	p("Redis commands per request, and Redis's own execution time per call (INFO commandstats: network I/O not included; commands a script runs count too, so a script's `GET` shows up as a `get`); and how many reads (read(2) calls bringing commands, INFO stats) Redis made per request, and commands per read (scripts count once), the depth of the pipelines it was sent; medians:")
	p("")
	p("| load | commands per request (µs each inside Redis) | Redis reads per request | commands per read |")
	p("|---|---|---:|---:|")
	for _, rw := range rep.rows()[1:6] {
		p("| %s | %s | %.2f | %.1f |", rw.name, cmdSummary(rep.runs, rw.get),
			med(rep.runs, func(r runResult) float64 { l := rw.get(r); return ratio(float64(l.RedisReads), float64(l.Requests)) }),
			med(rep.runs, func(r runResult) float64 {
				l := rw.get(r)
				return ratio(float64(l.RedisCommands), float64(l.RedisReads))
			}))
	}
	p("")
	p("`/verify/batch` verifies %.0f tokens/s (median), %.1f× the tokens/s of single `/verify` calls.",
		med(rep.runs, func(r runResult) float64 { return batchSize * r.batch.RPS }),
		med(rep.runs, func(r runResult) float64 { return ratio(batchSize*r.batch.RPS, r.verify.RPS) }))
	p("redis-benchmark: %d requests per test, 3-byte values, no pipelining, %d connections: one command per request.", o.redisRequests, o.connections)

	p("")
	p("### Targets (issue 12)")
	p("")
	p("| target | measured | wanted | |")
	p("|---|---:|---:|---|")
	for _, t := range rep.targets() {
		p("%s", t)
	}

	if rep.bigErr != nil {
		p("")
		p("The flat-cost comparison with %d live tokens failed: %v", o.big, rep.bigErr)
	}
	if len(rep.big) > 0 {
		rep.printBig(p)
	}

	p("")
	p("### Redis memory per token (%d-byte bundle)", bundleBytes)
	p("")
	p("| measure | tokensvc | naive |")
	p("|---|---:|---:|")
	p("| `MEMORY USAGE` per record key, mean of %d sampled by SCAN | %.1f | %.1f |", rep.mem.Sampled, rep.mem.Usage, rep.naiveMem.Usage)
	p("| key length (tokensvc: prefix, hash tag, `t:`, 16 raw bytes of SHA-256; naive: `t:` + the token) | %.1f | %.1f |", rep.mem.KeyBytes, rep.naiveMem.KeyBytes)
	p("| value length (`STRLEN`; tokensvc: envelope + sealed bundle) | %.1f | %.1f |", rep.mem.ValueBytes, rep.naiveMem.ValueBytes)
	p("| `MEMORY USAGE` of the token's history list, mean (%d of %d records have one) | %.1f | – |", rep.mem.WithHistory, rep.mem.Sampled, rep.mem.HistoryUsage)
	p("| record and history together | %.1f | %.1f |", rep.mem.Usage+rep.mem.HistoryUsage, rep.naiveMem.Usage)
	p("| `INFO memory` used_memory delta / tokens, %d tokens | %.1f | |", rep.mem.Tokens, rep.mem.PerTokenDelta)
	if rep.bigMem != nil {
		p("| `INFO memory` used_memory delta / tokens, %d tokens | %.1f | |", rep.bigMem.Tokens, rep.bigMem.PerTokenDelta)
	}

	p("")
	p("### Each run")
	p("")
	p("| run | healthz req/s | naive verify | verify | × naive | naive verify p99 ms | verify p99 ms | naive generate | generate | × naive | batch tokens/s | × single verify | Redis GET | tokensvc verify peak RSS MiB |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i, r := range rep.runs {
		p("| %d | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f | %.0f | %.1f | %.0f | %.1f |", i+1, r.healthz.RPS,
			r.naiveVerify.RPS, r.verify.RPS, ratio(r.verify.RPS, r.naiveVerify.RPS), ms(r.naiveVerify.P99), ms(r.verify.P99),
			r.naiveGenerate.RPS, r.generate.RPS, ratio(r.generate.RPS, r.naiveGenerate.RPS),
			batchSize*r.batch.RPS, ratio(batchSize*r.batch.RPS, r.verify.RPS), r.redisGet.RPS, mib(r.verify.RSS))
	}
	for i, r := range rep.big {
		p("| big %d | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | | | | | | | %.1f |", i+1, r.healthz.RPS, r.naiveVerify.RPS, r.verify.RPS,
			ratio(r.verify.RPS, r.naiveVerify.RPS), ms(r.naiveVerify.P99), ms(r.verify.P99), mib(r.verify.RSS))
	}
	p("")
	var st []string
	for k, v := range rep.statuses {
		st = append(st, fmt.Sprintf("%s: %d", k, v))
	}
	slices.Sort(st)
	p("Answers in tokensvc's access log, by route and status (warm-up, preload and sanity checks included): %s. Of the 503s, %d were requests wrk abandoned when a load ended (context canceled). The first %d tokens were minted at %.0f tokens/s through a Go client with %d connections.",
		strings.Join(st, ", "), rep.abandoned, o.tokens, rep.preloadRate, o.connections)
}

// printBefore compares tokensvc with the earlier build run beside it
// (-before), in the same turns.
func (rep *report) printBefore(p func(string, ...any)) {
	p("")
	p("### This build against the earlier one (`-before`), in the same turns")
	p("")
	if len(rep.o.beforeSet) > 0 {
		p("The earlier one runs with %s.", rep.o.beforeSet.String())
		p("")
	}
	p("| load | before req/s | after req/s | after ÷ before | before × naive | after × naive | before p99 ms | after p99 ms | before CPU µs/req (service + Redis) | after CPU µs/req |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	cpu := func(l load) float64 { return cpuPerReq(l.SvcCPU+l.RedisCPU, l.Requests) }
	for _, rw := range []struct {
		name                string
		before, after, base func(runResult) load
	}{
		{"`GET /verify`", func(r runResult) load { return r.beforeVerify }, func(r runResult) load { return r.verify }, func(r runResult) load { return r.naiveVerify }},
		{fmt.Sprintf("`POST /verify/batch` (%d tokens)", batchSize), func(r runResult) load { return r.beforeBatch }, func(r runResult) load { return r.batch }, nil},
		{"`POST /generate`", func(r runResult) load { return r.beforeGenerate }, func(r runResult) load { return r.generate }, func(r runResult) load { return r.naiveGenerate }},
	} {
		xb, xa := "–", "–"
		if rw.base != nil {
			xb = fmt.Sprintf("%.2f", med(rep.runs, func(r runResult) float64 { return ratio(rw.before(r).RPS, rw.base(r).RPS) }))
			xa = fmt.Sprintf("%.2f", med(rep.runs, func(r runResult) float64 { return ratio(rw.after(r).RPS, rw.base(r).RPS) }))
		}
		p("| %s | %.0f | %.0f | %.3f | %s | %s | %.2f | %.2f | %.1f | %.1f |", rw.name,
			med(rep.runs, func(r runResult) float64 { return rw.before(r).RPS }),
			med(rep.runs, func(r runResult) float64 { return rw.after(r).RPS }),
			med(rep.runs, func(r runResult) float64 { return ratio(rw.after(r).RPS, rw.before(r).RPS) }),
			xb, xa,
			med(rep.runs, func(r runResult) float64 { return ms(rw.before(r).P99) }),
			med(rep.runs, func(r runResult) float64 { return ms(rw.after(r).P99) }),
			med(rep.runs, func(r runResult) float64 { return cpu(rw.before(r)) }),
			med(rep.runs, func(r runResult) float64 { return cpu(rw.after(r)) }))
	}
	p("")
	p("Redis `MEMORY USAGE` per token (record + history): before %.1f + %.1f B, after %.1f + %.1f B; `/verify` peak RSS: before %.1f MiB, after %.1f MiB.",
		rep.beforeMem.Usage, rep.beforeMem.HistoryUsage, rep.mem.Usage, rep.mem.HistoryUsage,
		med(rep.runs, func(r runResult) float64 { return mib(r.beforeVerify.RSS) }),
		med(rep.runs, func(r runResult) float64 { return mib(r.verify.RSS) }))
}

// printBig prints the flat-cost comparison.
func (rep *report) printBig(p func(string, ...any)) {
	o := rep.o
	p("")
	p("### Flat cost: `/verify` over %d live tokens", rep.bigLive)
	p("")
	p("The extra %d tokens were minted through `POST /generate` (%d connections) at %.0f/s. The big load rotates over all of them, the small one over its %d; each run of either has a naive `/verify` (over its %d tokens) and a `/healthz` of its own.", rep.bigMem.Tokens, o.connections, rep.bigRate, o.tokens, o.tokens)
	p("")
	p("| live tokens | `/verify` req/s | × naive | × healthz | p50 ms | p99 ms | tokensvc CPU µs/req | Redis CPU µs/req | non-2xx |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	line := func(n int64, get func(int) (l, nv, hz load), count int) {
		idx := make([]int, count)
		for i := range idx {
			idx[i] = i
		}
		f := func(g func(l, nv, hz load) float64) float64 {
			return med(idx, func(i int) float64 { return g(get(i)) })
		}
		p("| %d | %.0f | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f | %.0f |", n,
			f(func(l, _, _ load) float64 { return l.RPS }),
			f(func(l, nv, _ load) float64 { return ratio(l.RPS, nv.RPS) }),
			f(func(l, _, h load) float64 { return ratio(l.RPS, h.RPS) }),
			f(func(l, _, _ load) float64 { return ms(l.P50) }),
			f(func(l, _, _ load) float64 { return ms(l.P99) }),
			f(func(l, _, _ load) float64 { return cpuPerReq(l.SvcCPU, l.Requests) }),
			f(func(l, _, _ load) float64 { return cpuPerReq(l.RedisCPU, l.Requests) }),
			f(func(l, _, _ load) float64 { return float64(l.Failed) }))
	}
	line(int64(o.tokens), func(i int) (load, load, load) {
		r := rep.runs[i]
		return r.verify, r.naiveVerify, r.healthz
	}, len(rep.runs))
	line(rep.bigLive, func(i int) (load, load, load) {
		r := rep.big[i]
		return r.verify, r.naiveVerify, r.healthz
	}, len(rep.big))
	cpu := func(l load) float64 { return cpuPerReq(l.SvcCPU+l.RedisCPU, l.Requests) }
	smallCPU := med(rep.runs, func(r runResult) float64 { return cpu(r.verify) })
	bigCPU := med(rep.big, func(r bigResult) float64 { return cpu(r.verify) })
	smallH := med(rep.runs, func(r runResult) float64 { return ratio(r.verify.RPS, r.healthz.RPS) })
	bigH := med(rep.big, func(r bigResult) float64 { return ratio(r.verify.RPS, r.healthz.RPS) })
	p("")
	p("CPU per `/verify`, tokensvc and Redis together (less sensitive to other load on a shared machine than throughput): %.1f µs with %d live tokens, %.1f µs with %d (%+.1f%%). Against `/healthz` instead of the naive server, the drop is %.1f%%.",
		smallCPU, o.tokens, bigCPU, rep.bigLive, 100*(bigCPU/smallCPU-1), 100*(smallH-bigH)/smallH)
}

// complete checks that every figure of the report was produced, for the
// smoke run: every load answered, mostly 2xx, with latencies, CPU and
// resident set read, and the memory and flat-cost figures there.
func (rep *report) complete() error {
	var errs []error
	check := func(name string, l load, http bool) {
		switch {
		case l.RPS <= 0 || l.P50 <= 0 || l.P99 <= 0:
			errs = append(errs, fmt.Errorf("%s: no throughput or latency (%+v)", name, l))
		case http && l.Requests <= 0:
			errs = append(errs, fmt.Errorf("%s: no requests counted", name))
		case http && l.SvcCPU+l.RedisCPU <= 0:
			errs = append(errs, fmt.Errorf("%s: no CPU time read", name))
		case http && l.RSS <= 0:
			errs = append(errs, fmt.Errorf("%s: no resident set read", name))
		case http && l.Failed*100 > l.Requests:
			errs = append(errs, fmt.Errorf("%s: %d of %d answers were not 2xx", name, l.Failed, l.Requests))
		}
	}
	for i, r := range rep.runs {
		for _, rw := range rep.rows() {
			check(fmt.Sprintf("run %d, %s", i+1, rw.name), rw.get(r), rw.http)
		}
	}
	if len(rep.big) != rep.o.runs && !rep.o.skipBig {
		errs = append(errs, fmt.Errorf("flat-cost comparison: %d runs, want %d (%v)", len(rep.big), rep.o.runs, rep.bigErr))
	}
	for i, r := range rep.big {
		check(fmt.Sprintf("big run %d, /healthz", i+1), r.healthz, true)
		check(fmt.Sprintf("big run %d, naive /verify", i+1), r.naiveVerify, true)
		check(fmt.Sprintf("big run %d, /verify", i+1), r.verify, true)
	}
	if rep.mem.Usage <= 0 || rep.naiveMem.Usage <= 0 || rep.mem.ValueBytes <= 0 {
		errs = append(errs, errors.New("no MEMORY USAGE figures"))
	}
	if rep.peakRSS <= 0 || rep.naivePeakRSS <= 0 {
		errs = append(errs, errors.New("no peak RSS (VmHWM) read"))
	}
	for _, t := range rep.targets() {
		if t.measured == 0 && !strings.Contains(t.what, "drop") {
			errs = append(errs, fmt.Errorf("target %q: no figure", t.what))
		}
	}
	return errors.Join(errs...)
}

// accessLogStatuses counts the answers of the service's access log by
// route and status, to show that the loads were answered as intended (no
// 429, no 503), and the requests that wrk abandoned when a load ended:
// their context is canceled, and the service answers them 503.
func accessLogStatuses(path string) (map[string]int, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	out := map[string]int{}
	abandoned := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Contains(line, []byte(`"msg":"store unavailable"`)) && bytes.Contains(line, []byte("context canceled")) {
			abandoned++
			continue
		}
		if !bytes.Contains(line, []byte(`"msg":"request"`)) {
			continue
		}
		var e struct {
			Method, Route string
			Status        int
		}
		if json.Unmarshal(line, &e) == nil {
			out[e.Method+" "+e.Route+" "+strconv.Itoa(e.Status)]++
		}
	}
	return out, abandoned, sc.Err()
}

// machineFacts describes where the figures were taken.
func machineFacts(ctx context.Context) []string {
	cmdOut := func(name string, args ...string) string {
		// wrk -v prints its version and exits 1: read the output anyway.
		out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]); line != "" {
			return line
		}
		return "unknown"
	}
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return []string{
		"date: " + time.Now().UTC().Format("2006-01-02 15:04 MST"),
		fmt.Sprintf("machine: %s cores (nproc), %s, %s/%s, kernel %s; load average at start %s", cmdOut("nproc"), cpu, runtime.GOOS, runtime.GOARCH, cmdOut("uname", "-r"), load),
		"software: " + cmdOut("go", "version") + "; " + cmdOut("redis-server", "--version") + "; " + wrkVersion(cmdOut("wrk", "-v")),
	}
}

// wrkVersion keeps "wrk <version>" of wrk -v's first line.
func wrkVersion(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return "wrk " + line
	}
	return f[0] + " " + f[1]
}

// cmdSummary lists the Redis commands of a load per request, as medians
// over the runs: "evalsha 1.00 (9.1 µs), get 1.00 (0.8 µs)".
func cmdSummary(runs []runResult, get func(runResult) load) string {
	var names []string
	for _, r := range runs {
		for _, c := range get(r).Cmds {
			if !slices.Contains(names, c.Name) {
				names = append(names, c.Name)
			}
		}
	}
	var parts []string
	for _, name := range names {
		stat := func(r runResult) (cmdStat, int64) {
			l := get(r)
			for _, c := range l.Cmds {
				if c.Name == name {
					return c, l.Requests
				}
			}
			return cmdStat{}, l.Requests
		}
		perReq := med(runs, func(r runResult) float64 { c, n := stat(r); return ratio(float64(c.Calls), float64(n)) })
		if perReq < 0.005 {
			continue
		}
		usec := med(runs, func(r runResult) float64 { c, _ := stat(r); return c.UsecPerCall })
		parts = append(parts, fmt.Sprintf("%s %.2f (%.1f µs)", name, perReq, usec))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
