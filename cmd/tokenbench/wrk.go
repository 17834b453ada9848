package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	verify, verifyBig, batch, generate string
}

// writeScripts writes the wrk scripts of one side (name) into dir.
func writeScripts(dir, name string, o options, tokensFile, bigFile, key string) (scripts, error) {
	path := func(kind string) string { return filepath.Join(dir, name+"-"+kind+".lua") }
	sc := scripts{verify: path("verify"), verifyBig: path("verify-big"), batch: path("batch"), generate: path("generate")}
	files := map[string]string{
		sc.verify:    fmt.Sprintf(verifyLua, luaString(tokensFile), tokenLine, o.threads, tokenLine, tokenLen-1),
		sc.verifyBig: fmt.Sprintf(verifyLua, luaString(bigFile), tokenLine, o.threads, tokenLine, tokenLen-1),
		sc.batch:     fmt.Sprintf(batchLua, luaString(tokensFile), batchSize, o.threads),
		sc.generate:  fmt.Sprintf(generateLua, luaString(bundle(0)), luaString(key)),
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte("-- generated by tokenbench\n"+text), 0o644); err != nil {
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
