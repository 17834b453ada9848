package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/server/ratelimit"
	"github.com/tokensvc/tokensvc/store"
)

// Benchmarks of the hot paths through the real handler: the in-memory
// store (so Redis is not measured here; see store's benchmarks), the
// brute-force guard on, metrics on, and access logs formatted as JSON at
// info level into io.Discard, as in production. Each iteration makes one
// httptest.ResponseRecorder; BenchmarkHealthz is the floor of the stack
// (Echo, the middleware, the recorder) to compare with.
//
//	go test -run '^$' -bench . -benchmem ./server/

// benchBundle is a 150-byte editor bundle, as tokenbench mints.
const benchBundle = `{"auth":"apiKey","userId":"u-0000042","server":"eu-1","file":"/drawings/projects/p-00042/building-a-floor-2-electrical-plan-rev-7-final-approved.dwg"}`

func newBenchServer(b *testing.B) *Server {
	b.Helper()
	if len(benchBundle) != 150 {
		b.Fatalf("benchBundle is %d bytes, want 150", len(benchBundle))
	}
	mem := store.NewMemory(nil, 0)
	b.Cleanup(func() { mem.Close() })
	reg, err := keys.New(context.Background(), keys.HashSecret(partnerKey), keys.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{
		Store:       mem,
		Partners:    reg,
		Logger:      slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Limiter:     ratelimit.NewMemory(nil),
		FailureRate: ratelimit.Limit{N: 100, Per: time.Minute},
		Metrics:     prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	return srv
}

// benchServe sends req through srv and fails b unless the answer is 200.
func benchServe(b *testing.B, srv *Server, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, rec.Code, rec.Body)
	}
	return rec
}

func benchMint(b *testing.B, srv *Server, n int) []string {
	b.Helper()
	tokens := make([]string, n)
	for i := range tokens {
		req := httptest.NewRequest(http.MethodPost, "/generate", strings.NewReader(benchBundle))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-api-key", partnerKey)
		var g struct{ Token string }
		if err := json.Unmarshal(benchServe(b, srv, req).Body.Bytes(), &g); err != nil {
			b.Fatal(err)
		}
		tokens[i] = g.Token
	}
	return tokens
}

func BenchmarkHealthz(b *testing.B) {
	srv := newBenchServer(b)
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	b.ReportAllocs()
	for b.Loop() {
		benchServe(b, srv, req)
	}
}

func BenchmarkVerify(b *testing.B) {
	srv := newBenchServer(b)
	tokens := benchMint(b, srv, 1000)
	reqs := make([]*http.Request, len(tokens))
	for i, t := range tokens {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/verify", nil)
		reqs[i].Header.Set("x-api-token", t)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		benchServe(b, srv, reqs[i%len(reqs)])
		i++
	}
}

func BenchmarkGenerate(b *testing.B) {
	srv := newBenchServer(b)
	body := []byte(benchBundle)
	req := httptest.NewRequest(http.MethodPost, "/generate", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", partnerKey)
	rd := bytes.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body, req.ContentLength = io.NopCloser(rd), int64(len(body))
		benchServe(b, srv, req)
	}
}

func BenchmarkBatchVerify100(b *testing.B) {
	srv := newBenchServer(b)
	tokens := benchMint(b, srv, 1000)
	var bodies [][]byte
	for i := 0; i+100 <= len(tokens); i += 100 {
		body, _ := json.Marshal(map[string][]string{"tokens": tokens[i : i+100]})
		bodies = append(bodies, body)
	}
	req := httptest.NewRequest(http.MethodPost, "/verify/batch", nil)
	req.Header.Set("Content-Type", "application/json")
	rd := bytes.NewReader(nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		body := bodies[i%len(bodies)]
		i++
		rd.Reset(body)
		req.Body, req.ContentLength = io.NopCloser(rd), int64(len(body))
		benchServe(b, srv, req)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(100*i), "ns/token")
}

func BenchmarkDecodeBundle(b *testing.B) {
	body := []byte(benchBundle)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeBundle(mediaJSON, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseToken(b *testing.B) {
	token, _, err := newToken()
	if err != nil {
		b.Fatal(err)
	}
	s := token.String()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := parseToken(s); !ok {
			b.Fatal("refused")
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	const token = "9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126"
	bundle := []byte(benchBundle)
	b.ReportAllocs()
	b.SetBytes(int64(len(bundle)))
	for b.Loop() {
		rec := store.Record{Bundle: bundle}
		seal(token, &rec)
	}
}

func BenchmarkUnseal(b *testing.B) {
	const token = "9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126"
	sealed := store.Record{Bundle: []byte(benchBundle)}
	seal(token, &sealed)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBundle)))
	for b.Loop() {
		rec := sealed
		if err := unseal(token, &rec); err != nil {
			b.Fatal(err)
		}
	}
}
