package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Access log lines are written to standard output in batches, not one
// write(2) per request: a syscall per line was a tenth of a verify's CPU.
// Every other line (start-up, warnings, errors) is written at once, with
// whatever access lines came before it. A line waits at most
// logFlushEvery; Close, at the end of serve, writes the rest, so stopping
// (SIGTERM) loses none. A crash can lose the last logFlushEvery of access
// lines.
const (
	logFlushEvery = 100 * time.Millisecond
	logBufferSize = 64 << 10
)

// logWriter is the buffer between the JSON log and standard output.
type logWriter struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// newLogWriter buffers out and writes it out every interval.
func newLogWriter(out io.Writer, interval time.Duration) *logWriter {
	w := &logWriter{buf: bufio.NewWriterSize(out, logBufferSize), stop: make(chan struct{}), done: make(chan struct{})}
	go w.flushEvery(interval)
	return w
}

func (w *logWriter) flushEvery(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			_ = w.Flush()
		}
	}
}

// Write buffers p; a full buffer is written out first.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// Flush writes out what is buffered.
func (w *logWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Flush()
}

// Close stops the timer and writes out the rest. Lines logged afterwards
// are still buffered, and written by the next Flush or when the buffer
// fills: call Close last.
func (w *logWriter) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
		<-w.done
	}
	return w.Flush()
}

// flushingHandler writes every record but access log lines out at once.
type flushingHandler struct {
	slog.Handler
	w *logWriter
}

// accessLine says whether r is an access log line: the "request" lines
// the server writes at info (debug for health checks).
func accessLine(r slog.Record) bool { return r.Message == "request" && r.Level <= slog.LevelInfo }

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if !accessLine(r) {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(attrs), h.w}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.w}
}
