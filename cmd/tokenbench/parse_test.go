package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:8080/healthz
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.04ms    1.36ms  30.01ms   89.33%
    Req/Sec    28.66k     3.08k   36.23k    71.00%
  Latency Distribution
     50%  552.00us
     75%    1.16ms
     90%    2.53ms
     99%    1.02s
  570334 requests in 10.00s, 91.93MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 0, read 3, write 0, timeout 0
Requests/sec:  57022.36
Transfer/sec:      9.19MB
`
	l, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := load{RPS: 57022.36, P50: 552 * time.Microsecond, P99: 1020 * time.Millisecond, Requests: 570334, Failed: 12, Socket: "Socket errors: connect 0, read 3, write 0, timeout 0"}
	if l.RPS != want.RPS || l.P50 != want.P50 || l.P99 != want.P99 || l.Requests != want.Requests || l.Failed != want.Failed || l.Socket != want.Socket {
		t.Fatalf("got %+v\nwant %+v", l, want)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Fatal("parsed the output of a failed wrk")
	}
}

func TestParseRedisBenchCSV(t *testing.T) {
	out := `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","85837.77","0.303","0.080","0.335","0.455","2.119","7.327"
"GET","96618.36","0.280","0.072","0.319","0.439","0.679","5.135"
`
	res, err := parseRedisBenchCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	get := res["GET"]
	if get.RPS != 96618.36 || get.P50 != 319*time.Microsecond || get.P99 != 679*time.Microsecond {
		t.Fatalf("GET = %+v", get)
	}
	if res["SET"].RPS != 85837.77 {
		t.Fatalf("SET = %+v", res["SET"])
	}
}

func TestCommandStatsLine(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_evalsha:calls=113,usec=1096,usec_per_call=9.70,rejected_calls=0,failed_calls=0\r\ncmdstat_get:calls=7,usec=5,usec_per_call=0.71,rejected_calls=0,failed_calls=0\r\n"
	m := cmdstatLine.FindAllStringSubmatch(info, -1)
	if len(m) != 2 || m[0][1] != "evalsha" || m[0][2] != "113" || m[0][3] != "1096" || m[0][4] != "9.70" || m[1][1] != "get" {
		t.Fatalf("matches = %q", m)
	}
}

// Every bundle is valid JSON of exactly bundleBytes bytes, and survives
// quoting for Lua.
func TestBundle(t *testing.T) {
	for _, i := range []int{0, 1, 42, 99_999, 1_000_000, 12_345_678} {
		b := bundle(i)
		if len(b) != bundleBytes || !json.Valid([]byte(b)) {
			t.Fatalf("bundle(%d) = %d bytes %s", i, len(b), b)
		}
	}
	if got := luaString(`{"a":"b\c"}`); got != `"{\"a\":\"b\\c\"}"` {
		t.Fatalf("luaString = %s", got)
	}
}

func TestTargetVerdict(t *testing.T) {
	cases := []struct {
		t    target
		want string
	}{
		{target{measured: 0.8, want: 0.75, atLeast: true}, "met"},
		{target{measured: 0.3, want: 0.75, atLeast: true}, "60% short"},
		{target{measured: 296, want: 250}, "18% over"},
		{target{measured: 250, want: 250}, "met"},
	}
	for _, c := range cases {
		if got := c.t.verdict(); !strings.Contains(got, c.want) {
			t.Errorf("%+v: verdict %q, want %q", c.t, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatalf("median = %v", m)
	}
}

func TestIsRecordKey(t *testing.T) {
	cases := []struct {
		key  string
		want bool
	}{
		{"tokensvc:t:0123456789abcdef", true},
		{"tokensvc:{a7}t:0123456789abcdef", true},
		{"tokensvc:{a7}e:bench-partner", false},
		{"tokensvc:layout", false},
		{"tokensvc:rl:fail:127.0.0.1", false},
		{"other:t:0123456789abcdef", false},
	}
	for _, c := range cases {
		if got := isRecordKey("tokensvc:", c.key); got != c.want {
			t.Errorf("isRecordKey(%q) = %v, want %v", c.key, got, c.want)
		}
	}
}

// Loads run in slices add up to one: requests, time and CPU summed,
// throughput over the whole, percentiles from the merged distributions
// that luaDone prints.
func TestMergeSlices(t *testing.T) {
	out := func(us int64, hist string) string {
		return "Requests/sec: 1\n     50%  1.00ms\n     99%  2.00ms\n" +
			"tokenbench-summary " + strconv.FormatInt(us, 10) + " 100\n" + hist
	}
	a, err := parseWrk(out(1_000_000, "tokenbench-latency 100 50\ntokenbench-latency 200 49\ntokenbench-latency 5000 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseWrk(out(1_000_000, "tokenbench-latency 100 10\ntokenbench-latency 300 90\n"))
	if err != nil {
		t.Fatal(err)
	}
	a.SvcCPU, b.SvcCPU = time.Second, 2*time.Second
	a.Cmds = []cmdStat{{Name: "evalsha", Calls: 10, Usec: 100}}
	b.Cmds = []cmdStat{{Name: "evalsha", Calls: 30, Usec: 500}, {Name: "get", Calls: 1, Usec: 1}}
	m := merge([]load{a, b})
	if m.Requests != 200 || m.RPS != 100 || m.SvcCPU != 3*time.Second {
		t.Errorf("merged %d requests at %.1f/s, CPU %s; want 200, 100/s, 3s", m.Requests, m.RPS, m.SvcCPU)
	}
	// 200 latencies: 60 at 100 µs, 49 at 200, 90 at 300, 1 at 5 ms.
	if m.P50 != 200*time.Microsecond || m.P99 != 300*time.Microsecond {
		t.Errorf("merged p50 %s, p99 %s; want 200µs, 300µs", m.P50, m.P99)
	}
	if len(m.Cmds) != 2 || m.Cmds[0].Name != "evalsha" || m.Cmds[0].Calls != 40 || m.Cmds[0].UsecPerCall != 15 {
		t.Errorf("merged commands %+v", m.Cmds)
	}
}

func TestHistoryKey(t *testing.T) {
	if h, ok := historyKey("tokensvc:{a7}t:0123456789abcdef"); !ok || h != "tokensvc:{a7}h:0123456789abcdef" {
		t.Errorf("historyKey = %q, %v", h, ok)
	}
	if _, ok := historyKey("t:9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126"); ok {
		t.Error("a naive record has a history key")
	}
}
