package main

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store/redisstore"
)

// redisBench runs redis-benchmark GET and SET at the load's concurrency,
// one command per request (no pipelining): the Redis limit of a service
// that makes one round trip per request.
func redisBench(ctx context.Context, o options, port int, rs *server) (get, set load, err error) {
	n := o.redisRequests
	before := rs.cpu()
	cmd := exec.CommandContext(ctx, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-c", strconv.Itoa(o.connections), "-n", strconv.Itoa(n), "-t", "get,set", "--csv")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return get, set, fmt.Errorf("redis-benchmark: %w\n%s", err, out)
	}
	res, err := parseRedisBenchCSV(string(out))
	if err != nil {
		return get, set, fmt.Errorf("redis-benchmark: %w\n%s", err, out)
	}
	get, okG := res["GET"]
	set, okS := res["SET"]
	if !okG || !okS {
		return get, set, fmt.Errorf("redis-benchmark: no GET and SET lines\n%s", out)
	}
	// Redis CPU is shared between the two tests by their request counts.
	cpu := (rs.cpu() - before) / 2
	get.RedisCPU, set.RedisCPU = cpu, cpu
	return get, set, nil
}

// parseRedisBenchCSV reads `redis-benchmark --csv`: a header line naming
// the columns (Redis 7: test, rps, avg/min/p50/p95/p99/max latency in ms),
// then one line a test.
func parseRedisBenchCSV(out string) (map[string]load, error) {
	recs, err := csv.NewReader(strings.NewReader(strings.TrimSpace(out))).ReadAll()
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	res := map[string]load{}
	for _, r := range recs {
		if len(r) > 0 && r[0] == "test" {
			for i, name := range r {
				col[name] = i
			}
			continue
		}
		rpsAt, ok := col["rps"]
		if !ok || len(r) <= rpsAt {
			continue
		}
		var l load
		l.RPS, _ = strconv.ParseFloat(r[rpsAt], 64)
		ms := func(name string) time.Duration {
			i, ok := col[name]
			if !ok || i >= len(r) {
				return 0
			}
			v, _ := strconv.ParseFloat(r[i], 64)
			return time.Duration(v * float64(time.Millisecond))
		}
		l.P50, l.P99 = ms("p50_latency_ms"), ms("p99_latency_ms")
		res[r[0]] = l
	}
	if len(col) == 0 {
		return nil, fmt.Errorf("no CSV header (redis-benchmark older than 7?)")
	}
	return res, nil
}

// memory is what Redis says a token costs.
type memory struct {
	Sampled       int
	KeyBytes      float64 // mean key length
	ValueBytes    float64 // mean STRLEN of the record
	Usage         float64 // mean MEMORY USAGE of the record key
	HistoryUsage  float64 // mean MEMORY USAGE of its history list (tokensvc), 0 when it has none
	WithHistory   int     // how many of the sampled records have a history
	UsedDelta     int64   // used_memory after loading minus before
	Tokens        int     // tokens loaded between the two
	PerTokenDelta float64
}

func usedMemory(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^used_memory:(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0, fmt.Errorf("no used_memory in INFO memory")
	}
	return strconv.ParseInt(m[1], 10, 64)
}

// isRecordKey says whether key names a token record under prefix:
// <prefix>t:<id>, or <prefix>{gg}t:<id> where a Cluster hash tag groups
// the records.
func isRecordKey(prefix, key string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return false
	}
	if len(rest) > 4 && rest[0] == '{' && rest[3] == '}' {
		rest = rest[4:]
	}
	return strings.HasPrefix(rest, redisstore.RecordInfix)
}

// scanRecords calls fn with every record key of rs.
func scanRecords(ctx context.Context, c *redis.Client, rs recordsOf, fn func(key string) bool) error {
	iter := c.Scan(ctx, 0, rs.pattern, 1000).Iterator()
	for iter.Next(ctx) {
		if rs.is(iter.Val()) && !fn(iter.Val()) {
			return nil
		}
	}
	return iter.Err()
}

// sampleMemory averages MEMORY USAGE, key and value size over up to n
// record keys found by SCAN.
func sampleMemory(ctx context.Context, c *redis.Client, rs recordsOf, n int) (memory, error) {
	var m memory
	var keys []string
	if err := scanRecords(ctx, c, rs, func(k string) bool { keys = append(keys, k); return len(keys) < n }); err != nil {
		return m, err
	}
	if len(keys) == 0 {
		return m, fmt.Errorf("no token records match %q", rs.pattern)
	}
	usage := make([]*redis.IntCmd, len(keys))
	strlen := make([]*redis.IntCmd, len(keys))
	history := make([]*redis.IntCmd, len(keys))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			usage[i] = p.MemoryUsage(ctx, k, 0)
			strlen[i] = p.StrLen(ctx, k)
			if h, ok := historyKey(k); ok {
				history[i] = p.MemoryUsage(ctx, h, 0)
			}
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return m, err
	}
	for i, k := range keys {
		m.KeyBytes += float64(len(k))
		m.ValueBytes += float64(strlen[i].Val())
		m.Usage += float64(usage[i].Val())
		if history[i] != nil && history[i].Err() == nil {
			m.HistoryUsage += float64(history[i].Val())
			m.WithHistory++
		}
	}
	m.Sampled = len(keys)
	f := float64(len(keys))
	m.KeyBytes, m.ValueBytes, m.Usage, m.HistoryUsage = m.KeyBytes/f, m.ValueBytes/f, m.Usage/f, m.HistoryUsage/f
	return m, nil
}

// historyKey names the history list of a tokensvc record key:
// <prefix>{gg}h:<id> for <prefix>{gg}t:<id>.
func historyKey(record string) (string, bool) {
	i := strings.Index(record, "}"+redisstore.RecordInfix)
	if i < 0 {
		return "", false
	}
	return record[:i+1] + redisstore.HistoryInfix + record[i+1+len(redisstore.RecordInfix):], true
}

// recordKeys returns every record key of rs.
func recordKeys(ctx context.Context, c *redis.Client, rs recordsOf) (map[string]struct{}, error) {
	keys := map[string]struct{}{}
	err := scanRecords(ctx, c, rs, func(k string) bool { keys[k] = struct{}{}; return true })
	return keys, err
}

// dropOthers unlinks the record keys not in keep: the tokens a /generate
// load minted, so that every /verify load sees the same live tokens.
func dropOthers(ctx context.Context, c *redis.Client, rs recordsOf, keep map[string]struct{}) (int, error) {
	var batch []string
	dropped := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.Unlink(ctx, batch...).Err()
		dropped += len(batch)
		batch = batch[:0]
		return err
	}
	var ferr error
	err := scanRecords(ctx, c, rs, func(k string) bool {
		if _, ok := keep[k]; !ok {
			batch = append(batch, k)
			if len(batch) == 1000 {
				ferr = flush()
			}
		}
		return ferr == nil
	})
	if err = errors.Join(err, ferr); err != nil {
		return dropped, err
	}
	return dropped, flush()
}

// redisIO reads how many reads (read(2) calls that brought commands) and
// commands Redis processed since the last CONFIG RESETSTAT: their ratio is
// how deep the pipelines it was sent were.
func redisIO(ctx context.Context, c *redis.Client) (reads, commands int64, err error) {
	info, err := c.Info(ctx, "stats").Result()
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			reads, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			commands, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return reads, commands, nil
}

// cmdStat is one line of INFO commandstats: how often a command ran and
// how long Redis spent executing it (network I/O not included).
type cmdStat struct {
	Name        string
	Calls       int64
	Usec        int64
	UsecPerCall float64
}

var cmdstatLine = regexp.MustCompile(`(?m)^cmdstat_([^:]+):calls=(\d+),usec=(\d+),usec_per_call=([0-9.]+)`)

// commandStats reads INFO commandstats, leaving out the commands
// tokenbench itself sends between loads.
func commandStats(ctx context.Context, c *redis.Client) ([]cmdStat, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	var out []cmdStat
	for _, m := range cmdstatLine.FindAllStringSubmatch(info, -1) {
		switch m[1] {
		case "config|resetstat", "info", "ping", "hello", "client|setinfo", "client|setname":
			continue
		}
		calls, _ := strconv.ParseInt(m[2], 10, 64)
		usec, _ := strconv.ParseInt(m[3], 10, 64)
		perCall, _ := strconv.ParseFloat(m[4], 64)
		out = append(out, cmdStat{Name: m[1], Calls: calls, Usec: usec, UsecPerCall: perCall})
	}
	slices.SortFunc(out, func(a, b cmdStat) int { return cmp.Compare(b.Calls, a.Calls) })
	return out, nil
}
