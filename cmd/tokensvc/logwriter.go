package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
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

// logWriter is the buffer between the JSON log and standard output. Each
// Write is one whole line, and the output is only ever cut between lines:
// the audit trail may write to the same standard output between two of
// its writes.
type logWriter struct {
	mu     sync.Mutex
	buf    *bufio.Writer
	closed bool // after Close every line is written at once
	stop   chan struct{}
	done   chan struct{}
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

// Write buffers the line p. What is buffered is written out first if p
// does not fit beside it (a line longer than the buffer is written out on
// its own), and p at once after Close.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p) > w.buf.Available() && w.buf.Buffered() > 0 {
		if err := w.buf.Flush(); err != nil {
			return 0, err
		}
	}
	n, err := w.buf.Write(p)
	if err == nil && w.closed {
		err = w.buf.Flush()
	}
	return n, err
}

// Flush writes out what is buffered.
func (w *logWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Flush()
}

// Close stops the timer and writes out the rest. Lines logged afterwards
// (by a handler that outlived the shutdown timeout) are written at once.
func (w *logWriter) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
		<-w.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return w.buf.Flush()
}

// flushingHandler is the service's log handler: slog's JSON handler,
// except that it writes every record but access log lines out at once,
// and encodes access lines itself. slog's generic encoding of the access
// line was most of its cost; the hand-made one writes the same bytes.
type flushingHandler struct {
	slog.Handler // a *slog.JSONHandler
	w            *logWriter
	// fast says access lines may be encoded here: Handler is the JSON
	// handler as made, with no attrs, groups, ReplaceAttr or AddSource.
	fast bool
}

// newLogHandler returns a JSON handler with opts writing to w.
func newLogHandler(w *logWriter, opts *slog.HandlerOptions) flushingHandler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	return flushingHandler{slog.NewJSONHandler(w, opts), w, opts.ReplaceAttr == nil && !opts.AddSource}
}

// accessLine says whether r is an access log line: the "request" lines
// the server writes at info (debug for health checks).
func accessLine(r slog.Record) bool { return r.Message == "request" && r.Level <= slog.LevelInfo }

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.fast && accessLine(r) {
		bp := lineBufs.Get().(*[]byte)
		b, ok := appendAccessLine((*bp)[:0], r)
		if ok {
			_, err := h.w.Write(b)
			if cap(b) <= 16<<10 { // keep no outsized buffer
				*bp = b
				lineBufs.Put(bp)
			}
			return err
		}
		lineBufs.Put(bp)
	}
	err := h.Handler.Handle(ctx, r)
	if !accessLine(r) {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(attrs), h.w, false}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.w, false}
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendAccessLine appends r as slog.JSONHandler (with default options,
// no attrs, no groups) writes it: {"time":…,"level":…,"msg":…, then the
// attrs in order}, and a newline. It handles only what the access line
// holds: attrs with a key and a string, int or finite float value, and a
// time with a four-digit year. Given anything else it reports false, for
// slog to write the record.
func appendAccessLine(b []byte, r slog.Record) ([]byte, bool) {
	b = append(b, '{')
	if !r.Time.IsZero() { // slog leaves out a zero time
		if y := r.Time.Year(); y < 0 || y > 9999 {
			return b, false // slog writes an error into the line
		}
		b = append(b, `"time":"`...)
		b = r.Time.AppendFormat(b, time.RFC3339Nano) // as slog and json.Marshal do
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendJSONString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendJSONString(b, r.Message)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "" { // slog may leave it out
			ok = false
			return false
		}
		b = append(b, ',')
		b = appendJSONString(b, a.Key)
		b = append(b, ':')
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			b = appendJSONString(b, v.String())
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindFloat64:
			f := v.Float64()
			if math.IsNaN(f) || math.IsInf(f, 0) { // slog writes an error
				ok = false
				break
			}
			b = appendJSONFloat(b, f)
		default:
			ok = false
		}
		return ok
	})
	return append(b, '}', '\n'), ok
}

// appendJSONFloat appends finite f as encoding/json does, which slog
// calls: like %g but with exponents only below 1e-6 and from 1e21, and
// not padded to two digits.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-07 to e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// jsonSafe holds the bytes a JSON string holds as they are: ASCII but
// control characters, '"' and '\\'.
var jsonSafe = func() (safe [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		safe[c] = c != '"' && c != '\\'
	}
	return safe
}()

// appendJSONString appends s quoted as slog's JSON handler does: \" \\
// \n \r \t, other control characters as \u00XX, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 as \u2028 and \u2029, and nothing else
// escaped (not <, > or &).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
