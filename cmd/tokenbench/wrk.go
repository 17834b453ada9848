package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// load is one measured figure: a wrk run or a redis-benchmark test.
type load struct {
	RPS      float64
	P50, P99 time.Duration
	Requests int64
	Failed   int64  // non-2xx answers
	Socket   string // wrk's socket error line, when there was one
	SvcCPU   time.Duration
	RedisCPU time.Duration
	Cmds     []cmdStat // Redis commands run during the load, most called first
	RSS      int64     // the server's largest resident set during the load, bytes
	// Reads and commands of the server's Redis during the load (INFO
	// stats): commands per read is the depth of the pipelines it got.
	RedisReads, RedisCommands int64
	Elapsed                   time.Duration
	Hist                      []bucket // wrk's latency distribution: every distinct µs value, ascending
}

// bucket is one value of a latency distribution and how often it was seen.
type bucket struct{ us, n int64 }

// merge adds up loads of one server measured in slices: requests, time,
// CPU and Redis commands are summed, throughput and percentiles taken
// over the whole (from the latency distributions), RSS is the largest.
func merge(parts []load) load {
	if len(parts) == 1 {
		return parts[0]
	}
	var m load
	counts := map[int64]int64{}
	cmds := map[string]*cmdStat{}
	var names []string
	for _, p := range parts {
		m.Requests += p.Requests
		m.Failed += p.Failed
		m.SvcCPU += p.SvcCPU
		m.RedisCPU += p.RedisCPU
		m.Elapsed += p.Elapsed
		m.RSS = max(m.RSS, p.RSS)
		m.RedisReads += p.RedisReads
		m.RedisCommands += p.RedisCommands
		if p.Socket != "" && !strings.Contains(m.Socket, p.Socket) {
			m.Socket = strings.TrimPrefix(m.Socket+"; "+p.Socket, "; ")
		}
		for _, b := range p.Hist {
			counts[b.us] += b.n
		}
		for _, c := range p.Cmds {
			if cmds[c.Name] == nil {
				cmds[c.Name] = &cmdStat{Name: c.Name}
				names = append(names, c.Name)
			}
			cmds[c.Name].Calls += c.Calls
			cmds[c.Name].Usec += c.Usec
		}
	}
	for us, n := range counts {
		m.Hist = append(m.Hist, bucket{us, n})
	}
	slices.SortFunc(m.Hist, func(a, b bucket) int { return cmp.Compare(a.us, b.us) })
	m.P50, m.P99 = percentile(m.Hist, 50), percentile(m.Hist, 99)
	if m.Elapsed > 0 {
		m.RPS = float64(m.Requests) / m.Elapsed.Seconds()
	}
	for _, name := range names {
		c := cmds[name]
		if c.Calls > 0 {
			c.UsecPerCall = float64(c.Usec) / float64(c.Calls)
		}
		m.Cmds = append(m.Cmds, *c)
	}
	slices.SortFunc(m.Cmds, func(a, b cmdStat) int { return cmp.Compare(b.Calls, a.Calls) })
	return m
}

// percentile is the smallest latency at or below which p percent of the
// distribution lies.
func percentile(h []bucket, p float64) time.Duration {
	var total int64
	for _, b := range h {
		total += b.n
	}
	want := int64(math.Ceil(float64(total) * p / 100))
	var seen int64
	for _, b := range h {
		if seen += b.n; seen >= want {
			return time.Duration(b.us) * time.Microsecond
		}
	}
	return 0
}

// cpuPerReq is the CPU time per request of one process, in µs.
func cpuPerReq(cpu time.Duration, requests int64) float64 {
	if requests == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(requests)
}

// wrkArgs is the wrk command line for one load.
func wrkArgs(o options, url, script string) []string {
	args := []string{
		"-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.connections),
		"-d", fmt.Sprintf("%ds", int(o.duration.Seconds())),
		"--timeout", "5s", "--latency",
	}
	if script != "" {
		args = append(args, "-s", script)
	}
	return append(args, url)
}

// runWrk runs wrk once and parses what it prints.
func runWrk(ctx context.Context, o options, url, script string) (load, string, error) {
	cmd := exec.CommandContext(ctx, "wrk", wrkArgs(o, url, script)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return load{}, string(out), fmt.Errorf("wrk %s: %w\n%s", url, err, out)
	}
	l, err := parseWrk(string(out))
	if err != nil {
		return load{}, string(out), fmt.Errorf("wrk %s: %w\n%s", url, err, out)
	}
	return l, string(out), nil
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSocket   = regexp.MustCompile(`(?m)^\s*Socket errors:.*$`)
	// What luaDone prints.
	wrkSummary = regexp.MustCompile(`(?m)^tokenbench-summary (\d+) (\d+)$`)
	wrkBucket  = regexp.MustCompile(`(?m)^tokenbench-latency (\d+) (\d+)$`)
)

// parseWrk reads the figures of `wrk --latency` output.
func parseWrk(out string) (load, error) {
	var l load
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return l, errors.New("no Requests/sec line")
	}
	l.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		l.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		d, err := wrkDuration(m[2], m[3])
		if err != nil {
			return l, err
		}
		if m[1] == "50" {
			l.P50 = d
		} else {
			l.P99 = d
		}
	}
	if l.P50 == 0 || l.P99 == 0 {
		return l, errors.New("no latency distribution (50% and 99%)")
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		l.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	l.Socket = strings.TrimSpace(wrkSocket.FindString(out))
	if m := wrkSummary.FindStringSubmatch(out); m != nil {
		us, _ := strconv.ParseInt(m[1], 10, 64)
		l.Elapsed = time.Duration(us) * time.Microsecond
		l.Requests, _ = strconv.ParseInt(m[2], 10, 64)
	}
	for _, m := range wrkBucket.FindAllStringSubmatch(out, -1) {
		us, _ := strconv.ParseInt(m[1], 10, 64)
		n, _ := strconv.ParseInt(m[2], 10, 64)
		l.Hist = append(l.Hist, bucket{us, n})
	}
	return l, nil
}

func wrkDuration(num, unit string) (time.Duration, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, err
	}
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	return time.Duration(v * float64(scale)), nil
}

// Lua scripts for wrk. Each wrk thread has its own Lua state: setup (in
// the main state) hands every thread its number, so the threads start at
// different places in the token list.
const luaThreads = `
local threads = 0
function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

local function read_tokens(path)
  local t = {}
  for line in io.lines(path) do
    if #line > 0 then t[#t + 1] = line end
  end
  return t
end
`

// luaDone, in every script, prints the run's length, its requests and
// its whole latency distribution (each distinct µs value and its count),
// so that loads run in slices can be added up exactly.
const luaDone = `
function done(summary, latency, requests)
  io.write(string.format("tokenbench-summary %d %d\n", summary.duration, summary.requests))
  for i = 1, #latency do
    local v, n = latency(i)
    io.write(string.format("tokenbench-latency %d %d\n", v, n))
  end
end
`

// verifyLua rotates GET /verify over every token of the file. The file is
// kept as one string and tokens are cut out of it: a Lua table of a
// million strings would make LuaJIT's collector walk it again and again,
// and wrk's pauses would show up as the service's latency.
const verifyLua = luaThreads + `
local data, n, i
function init(args)
  local f = assert(io.open(%s, "rb"))
  data = f:read("*a")
  f:close()
  n = math.floor(#data / %d)
  i = math.floor(n * thread_no / %d)
end

function request()
  i = i + 1
  if i > n then i = 1 end
  local at = (i - 1) * %d + 1
  return wrk.format("GET", "/verify", {["x-api-token"] = data:sub(at, at + %d)})
end
`

// batchLua rotates POST /verify/batch over the file, size tokens a request.
const batchLua = luaThreads + `
local reqs, i
function init(args)
  local tokens = read_tokens(%s)
  local size = %d
  reqs = {}
  local headers = {["Content-Type"] = "application/json"}
  for first = 1, #tokens - size + 1, size do
    local body = '{"tokens":["' .. table.concat(tokens, '","', first, first + size - 1) .. '"]}'
    reqs[#reqs + 1] = wrk.format("POST", "/verify/batch", headers, body)
  end
  i = math.floor(#reqs * thread_no / %d)
end

function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
`

// generateLua posts the same bundle again and again: one request, built
// once by wrk.
const generateLua = `
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = %s
`

// luaString quotes s for Lua; the inputs here are printable ASCII.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r > 0x7e:
			fmt.Fprintf(&b, "\\%d", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// scripts are the paths of the generated wrk scripts.
type scripts struct {
	healthz, verify, verifyBig, batch, generate string
}

// writeScripts writes the wrk scripts of one side (name) into dir.
func writeScripts(dir, name string, o options, tokensFile, bigFile, key string) (scripts, error) {
	path := func(kind string) string { return filepath.Join(dir, name+"-"+kind+".lua") }
	sc := scripts{healthz: path("healthz"), verify: path("verify"), verifyBig: path("verify-big"), batch: path("batch"), generate: path("generate")}
	files := map[string]string{
		sc.healthz:   "",
		sc.verify:    fmt.Sprintf(verifyLua, luaString(tokensFile), tokenLine, o.threads, tokenLine, tokenLen-1),
		sc.verifyBig: fmt.Sprintf(verifyLua, luaString(bigFile), tokenLine, o.threads, tokenLine, tokenLen-1),
		sc.batch:     fmt.Sprintf(batchLua, luaString(tokensFile), batchSize, o.threads),
		sc.generate:  fmt.Sprintf(generateLua, luaString(bundle(0)), luaString(key)),
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte("-- generated by tokenbench\n"+text+luaDone), 0o644); err != nil {
			return sc, err
		}
	}
	return sc, nil
}

// A token is a UUID: tokenLen characters, and a line of the token files
// is one more.
const (
	tokenLen  = 36
	tokenLine = tokenLen + 1
)

// writeTokens writes one token a line, every line tokenLine bytes long.
func writeTokens(path string, tokens []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, t := range tokens {
		if len(t) != tokenLen {
			f.Close()
			return fmt.Errorf("token %q is not %d characters", t, tokenLen)
		}
		w.WriteString(t)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
