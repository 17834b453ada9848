package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

// Access lines wait in the buffer; any other line writes them out with
// it; the timer writes out what waits; Close writes out the rest.
func TestLogWriter(t *testing.T) {
	out := &lockedBuffer{}
	lw := newLogWriter(out, time.Hour) // the timer is tested below
	log := slog.New(newLogHandler(lw, nil))
	log.Info("request", "route", "/verify")
	log.Debug("request", "route", "/healthz") // dropped at info
	if out.String() != "" {
		t.Fatalf("an access line was written at once: %s", out)
	}
	log.Warn("store full")
	if got := strings.Count(out.String(), "\n"); got != 2 || !strings.Contains(out.String(), `"route":"/verify"`) {
		t.Fatalf("after a warning, %d lines written, want the access line and the warning:\n%s", got, out)
	}
	log.With("k", "v").Info("request", "route", "/generate")
	if strings.Contains(out.String(), "/generate") {
		t.Fatal("an access line of a derived logger was written at once")
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"route":"/generate"`) {
		t.Fatalf("Close did not write out the buffered line:\n%s", out)
	}
	if err := lw.Close(); err != nil { // twice is harmless
		t.Fatal(err)
	}

	timed := &lockedBuffer{}
	lw = newLogWriter(timed, 10*time.Millisecond)
	defer lw.Close()
	slog.New(newLogHandler(lw, nil)).Info("request")
	deadline := time.Now().Add(5 * time.Second)
	for timed.String() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the timer never wrote the access line out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The output is only ever cut between lines, so another writer of the
// same standard output (the audit trail) can never land inside one; and a
// line logged after Close (a handler that outlived the shutdown) is
// written at once.
func TestLogWriterKeepsLinesWhole(t *testing.T) {
	out := &lockedBuffer{}
	lw := newLogWriter(out, time.Hour)
	long := `{"msg":"request","request_id":"` + strings.Repeat("a", 40<<10) + "\"}\n"  // two do not fit in the buffer
	huge := `{"msg":"request","request_id":"` + strings.Repeat("b", 100<<10) + "\"}\n" // larger than the buffer
	for _, line := range []string{long, long, huge, long} {
		if _, err := lw.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		out.Write([]byte(`{"audit":"event"}` + "\n")) // a write between two of the log's
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := lw.Write([]byte(`{"msg":"request","late":true}` + "\n")); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 9 {
		t.Fatalf("%d lines written, want 9 (4 access lines, 4 audit lines, the late line)", len(lines))
	}
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("line %d is not whole JSON: %.80q…", i+1, l)
		}
	}
	if !strings.Contains(lines[8], `"late":true`) {
		t.Fatalf("the line logged after Close was not written: last line %.80q", lines[8])
	}
}

// slogLine is what slog.JSONHandler with default options writes for r.
func slogLine(t testing.TB, r slog.Record) string {
	t.Helper()
	var b bytes.Buffer
	if err := slog.NewJSONHandler(&b, nil).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// handlerLine is what h, over a logWriter, writes for r.
func handlerLine(t testing.TB, r slog.Record, h func(*logWriter) slog.Handler) string {
	t.Helper()
	var b bytes.Buffer
	lw := newLogWriter(&b, time.Hour)
	if err := h(lw).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func plainHandler(lw *logWriter) slog.Handler { return newLogHandler(lw, nil) }

func record(tm time.Time, level slog.Level, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(tm, level, "request", 0)
	r.AddAttrs(attrs...)
	return r
}

// The access line encoded here is byte for byte slog's; what it does not
// encode, slog writes.
func TestAccessLine(t *testing.T) {
	tm := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	east := time.FixedZone("", 5*3600+30*60)
	fast := []struct {
		name string
		r    slog.Record
	}{
		{"typical", typicalAccessRecord(tm)},
		{"no attrs", record(tm, slog.LevelInfo)},
		{"debug", record(tm, slog.LevelDebug, slog.String("route", "/healthz"))},
		{"below debug", record(tm, slog.LevelDebug-3, slog.Int("status", 200))},
		{"between", record(tm, slog.LevelDebug+2, slog.Int("status", 200))},
		{"zero time", record(time.Time{}, slog.LevelInfo, slog.Int("status", 200))},
		{"whole second", record(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), slog.LevelInfo)},
		{"millisecond", record(time.Date(2024, 1, 2, 3, 4, 5, 1e6, time.UTC), slog.LevelInfo)},
		{"zone", record(tm.In(east), slog.LevelInfo)},
		{"local, monotonic", record(time.Now(), slog.LevelInfo)},
		{"year 0", record(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo)},
		{"year 9999", record(time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), slog.LevelInfo)},
		{"strings", record(tm, slog.LevelInfo,
			slog.String("empty", ""),
			slog.String("quotes", `say "hi"`),
			slog.String("backslash", `a\b\\`),
			slog.String("controls", "\x00\x01\x07\b\f\n\r\t\x1b\x1f\x7f end"),
			slog.String("invalid", "a\xffb\xc3(\xe2\x82\xed\xa0\x80"),
			slog.String("unicode", "héllo, 世界, 🎉, \ufffd, \ufeff"),
			slog.String("separators", "a\u2028b\u2029c\u2027\u202a"),
			slog.String("html", `<script>&amp;</script>`),
			slog.String("key \"\n\u2028\xff", "odd key"),
		)},
		{"ints", record(tm, slog.LevelInfo,
			slog.Int("zero", 0), slog.Int("neg", -1), slog.Int64("min", math.MinInt64), slog.Int64("max", math.MaxInt64),
		)},
		{"floats", record(tm, slog.LevelInfo,
			slog.Float64("zero", 0), slog.Float64("negzero", math.Copysign(0, -1)),
			slog.Float64("milli", 0.001), slog.Float64("ms", 12.345), slog.Float64("third", 1.0/3),
			slog.Float64("micro", 1e-6), slog.Float64("below micro", 9.99e-7), slog.Float64("tiny", 5e-324),
			slog.Float64("neg tiny", -1.5e-7), slog.Float64("big", 1e20), slog.Float64("bigger", 1e21),
			slog.Float64("huge", 123456789e300), slog.Float64("max", math.MaxFloat64), slog.Float64("whole", 1234567),
		)},
	}
	for _, c := range fast {
		t.Run(c.name, func(t *testing.T) {
			want := slogLine(t, c.r)
			got, ok := appendAccessLine(nil, c.r)
			if !ok {
				t.Fatalf("not encoded here; slog writes %s", want)
			}
			if string(got) != want {
				t.Fatalf("encoded\n%s\nslog writes\n%s", got, want)
			}
			if got := handlerLine(t, c.r, plainHandler); got != want {
				t.Fatalf("the handler wrote\n%s\nslog writes\n%s", got, want)
			}
		})
	}

	slow := []struct {
		name string
		r    slog.Record
	}{
		{"NaN", record(tm, slog.LevelInfo, slog.Float64("f", math.NaN()))},
		{"+Inf", record(tm, slog.LevelInfo, slog.Float64("f", math.Inf(1)))},
		{"-Inf", record(tm, slog.LevelInfo, slog.Float64("f", math.Inf(-1)))},
		{"year -1", record(time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo)},
		{"year 10000", record(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo)},
		{"empty key", record(tm, slog.LevelInfo, slog.String("", ""), slog.Int("", 0))},
		{"bool", record(tm, slog.LevelInfo, slog.Bool("b", true))},
		{"uint", record(tm, slog.LevelInfo, slog.Uint64("u", 1))},
		{"duration", record(tm, slog.LevelInfo, slog.Duration("d", time.Second))},
		{"time", record(tm, slog.LevelInfo, slog.Time("t", tm))},
		{"any", record(tm, slog.LevelInfo, slog.Any("err", errors.New("boom")))},
		{"group", record(tm, slog.LevelInfo, slog.Group("g", slog.Int("a", 1)))},
		{"valuer", record(tm, slog.LevelInfo, slog.Any("v", valuer{}))},
		{"after a good attr", record(tm, slog.LevelInfo, slog.Int("status", 200), slog.Bool("b", false))},
	}
	for _, c := range slow {
		t.Run(c.name, func(t *testing.T) {
			if got, ok := appendAccessLine(nil, c.r); ok {
				t.Fatalf("encoded here: %s", got)
			}
			if got, want := handlerLine(t, c.r, plainHandler), slogLine(t, c.r); got != want {
				t.Fatalf("the handler wrote\n%s\nslog writes\n%s", got, want)
			}
		})
	}

	// A derived handler or one with options leaves the line to slog.
	r := typicalAccessRecord(tm)
	optioned := []struct {
		name string
		opts *slog.HandlerOptions
		h    func(slog.Handler) slog.Handler
	}{
		{"with attrs", nil, func(h slog.Handler) slog.Handler { return h.WithAttrs([]slog.Attr{slog.String("k", "v")}) }},
		{"with group", nil, func(h slog.Handler) slog.Handler { return h.WithGroup("g") }},
		{"source", &slog.HandlerOptions{AddSource: true}, nil},
		{"replace", &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "route" {
				a.Value = slog.StringValue("/x")
			}
			return a
		}}, nil},
	}
	for _, c := range optioned {
		t.Run(c.name, func(t *testing.T) {
			var want bytes.Buffer
			var sh slog.Handler = slog.NewJSONHandler(&want, c.opts)
			h := func(lw *logWriter) slog.Handler { return newLogHandler(lw, c.opts) }
			if c.h != nil {
				sh = c.h(sh)
				h = func(lw *logWriter) slog.Handler { return c.h(newLogHandler(lw, c.opts)) }
			}
			if err := sh.Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			got := handlerLine(t, r, h)
			if got != want.String() {
				t.Fatalf("the handler wrote\n%s\nslog writes\n%s", got, &want)
			}
			if strings.Count(got, `"route"`) != 1 {
				t.Fatalf("the line was written twice or not at all: %s", got)
			}
		})
	}
}

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("resolved") }

func typicalAccessRecord(tm time.Time) slog.Record {
	return record(tm, slog.LevelInfo,
		slog.String("request_id", "0f8c6c1e-3a4b-4d2e-9f10-7b6a5c4d3e2f"),
		slog.String("method", "POST"),
		slog.String("route", "/v1/tokens/verify"),
		slog.Int("status", 200),
		slog.Int64("bytes", 187),
		slog.Float64("duration_ms", 1.234),
		slog.String("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
		slog.String("key_id", "partner-7"),
		slog.String("token_id", "tok_01HZX3J6Q8K2M4N5P7R9S1T3V5"),
	)
}

// Whatever the fuzzer makes, the line is slog's: encoded here if it can
// be, else by slog.
func FuzzAccessLine(f *testing.F) {
	f.Add("0f8c6c1e-3a4b", "/v1/tokens/verify", "key", int64(200), 1.234, int64(1715000000), int64(123456789), 0, 0)
	f.Add("", "", "k", int64(-1), 0.0, int64(0), int64(0), -4, 3600)
	f.Add(`"\`, "\x00\x1f\x7f\n\r\t", "\u2028", int64(math.MaxInt64), 1e21, int64(-1), int64(1e6), 2, -19800)
	f.Add("\xff\xc3(", "<&>", "\xed\xa0\x80", int64(math.MinInt64), 9.99e-7, int64(253402300799), int64(999999999), -3, 1)
	f.Add("héllo 世界 🎉", "\u2029\ufffd", "", int64(0), math.Inf(1), int64(-62167219200), int64(0), 0, 0)
	f.Add("a", "b", "c", int64(1), math.NaN(), int64(253402300800), int64(0), 0, 0)
	f.Add("a", "b", "c", int64(1), -5e-324, int64(-62167219201), int64(1), 0, 0)
	f.Fuzz(func(t *testing.T, s1, s2, key string, n int64, x float64, sec, nsec int64, level, zone int) {
		tm := time.Unix(sec, nsec%1e9).In(time.FixedZone("", zone%(18*3600)))
		if sec == 0 && nsec == 0 {
			tm = time.Time{}
		}
		r := record(tm, slog.Level(level%16-4),
			slog.String("request_id", s1), slog.String(key, s2), slog.Int64("bytes", n),
			slog.Float64("duration_ms", x), slog.String("s1", s1+s2))
		want := slogLine(t, r)
		if got, ok := appendAccessLine(nil, r); ok && string(got) != want {
			t.Fatalf("encoded\n%s\nslog writes\n%s", got, want)
		} else if !ok && !math.IsNaN(x) && !math.IsInf(x, 0) && key != "" && tm.Year() >= 0 && tm.Year() <= 9999 {
			t.Fatalf("not encoded here; slog writes %s", want)
		}
		if got := handlerLine(t, r, plainHandler); got != want {
			t.Fatalf("the handler wrote\n%s\nslog writes\n%s", got, want)
		}
	})
}

// One access line, through slog's JSON handler and through the one here,
// into a logWriter over io.Discard: Handle alone, and the whole log call.
func BenchmarkAccessLine(b *testing.B) {
	for _, c := range []struct {
		name string
		h    func(*logWriter) slog.Handler
	}{
		{"slog", func(lw *logWriter) slog.Handler { return flushingHandler{slog.NewJSONHandler(lw, nil), lw, false} }},
		{"fast", plainHandler},
	} {
		b.Run(c.name+"/Handle", func(b *testing.B) {
			lw := newLogWriter(io.Discard, time.Hour)
			defer lw.Close()
			h, r, ctx := c.h(lw), typicalAccessRecord(time.Now()), context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := h.Handle(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/LogAttrs", func(b *testing.B) {
			lw := newLogWriter(io.Discard, time.Hour)
			defer lw.Close()
			log, ctx := slog.New(c.h(lw)), context.Background()
			r := typicalAccessRecord(time.Time{})
			var attrs []slog.Attr
			r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
			b.ReportAllocs()
			for b.Loop() {
				log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
			}
		})
	}
}
