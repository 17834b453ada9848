package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Access lines wait in the buffer; any other line writes them out with
// it; the timer writes out what waits; Close writes out the rest.
func TestLogWriter(t *testing.T) {
	out := &lockedBuffer{}
	lw := newLogWriter(out, time.Hour) // the timer is tested below
	log := slog.New(flushingHandler{slog.NewJSONHandler(lw, nil), lw})
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
	slog.New(flushingHandler{slog.NewJSONHandler(lw, nil), lw}).Info("request")
	deadline := time.Now().Add(5 * time.Second)
	for timed.String() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the timer never wrote the access line out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
