package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Sink stores audit lines. Write stores every line of lines, in order, or
// returns an error (then some of them may be stored, never a part of one).
// It is called from many goroutines at once. The Redis Stream sink lives
// with the Redis store (store.AuditStream): Redis-backed things live there.
type Sink interface {
	Write(ctx context.Context, lines [][]byte) error
}

// Writer is a Sink on an io.Writer: each line and a newline, a batch in
// one Write call, one batch at a time, so lines never interleave.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter returns a Sink writing to w (standard output, a file).
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes the lines; ctx is not consulted (a write to a file or a
// pipe cannot be abandoned halfway).
func (w *Writer) Write(_ context.Context, lines [][]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = w.buf[:0]
	for _, l := range lines {
		w.buf = append(append(w.buf, l...), '\n')
	}
	_, err := w.w.Write(w.buf)
	return err
}

// File is a Writer on a file opened for appending, created with mode 0600
// when missing: the trail names clients and partners.
type File struct {
	*Writer
	f *os.File
}

// OpenFile opens path for appending. The file stays open: rotate it by
// copying and truncating (logrotate's copytruncate), which appending
// writes survive.
func OpenFile(path string) (*File, error) {
	if path == "" {
		return nil, errors.New("audit: empty file path")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &File{Writer: NewWriter(f), f: f}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }
