package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrUnavailable means an event could not be recorded. With
// Options.Required the request it describes fails (503
// audit_unavailable); otherwise Record never returns it.
var ErrUnavailable = errors.New("audit: the event could not be recorded")

// Defaults of Options.
const (
	DefaultQueue   = 8192
	DefaultBatch   = 256
	DefaultTimeout = time.Second
)

// Options configure a Recorder. Zero values take the defaults.
type Options struct {
	// Required makes Record wait until the sink has the event and return
	// ErrUnavailable when it could not: the caller then fails the request
	// rather than leave it unrecorded. Default false: events are queued
	// and written in batches by a goroutine of the Recorder; an event that
	// cannot be written (the sink fails, or the queue is full) is counted
	// with Failed and logged, once per burst.
	Required bool
	// Queue is how many events may wait to be written. Default DefaultQueue.
	Queue int
	// Batch is the most events one Write takes. Default DefaultBatch.
	Batch int
	// Timeout bounds each Write. Default DefaultTimeout.
	Timeout time.Duration
	// Failed, if set, is told of every n events that could not be
	// recorded (tokensvc_audit_write_failures_total).
	Failed func(n int)
	// Logger receives the failures. Default: discarded.
	Logger *slog.Logger
}

// Recorder delivers events to a Sink. A nil *Recorder records nothing, so
// callers need not ask whether the audit trail is on.
type Recorder struct {
	sink  Sink
	o     Options
	queue chan []byte
	done  chan struct{}
	// gate keeps Close from closing the queue while Record sends on it.
	gate   sync.RWMutex
	closed bool

	mu      sync.Mutex
	lastLog time.Time // the last failure logged, for once per burst
}

// New returns a Recorder writing to sink. Without Options.Required it
// starts the goroutine that writes the queue; Close stops it.
func New(sink Sink, o Options) (*Recorder, error) {
	if sink == nil {
		return nil, errors.New("audit: nil sink")
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{sink: sink, o: o, done: make(chan struct{})}
	if o.Required {
		close(r.done)
		return r, nil
	}
	r.queue = make(chan []byte, o.Queue)
	go r.drain()
	return r, nil
}

// On says whether events are recorded at all.
func (r *Recorder) On() bool { return r != nil }

// Required says whether a request must fail when its event cannot be
// recorded.
func (r *Recorder) Required() bool { return r != nil && r.o.Required }

// Record delivers e. Required: it returns once the sink has it, or
// ErrUnavailable. Otherwise it queues e and returns nil.
func (r *Recorder) Record(ctx context.Context, e Event) error {
	if r == nil {
		return nil
	}
	line, err := Encode(e)
	if err != nil {
		r.failed(1, err)
		return r.refuse(err)
	}
	if !r.o.Required {
		r.gate.RLock()
		queued, open := false, !r.closed
		if open {
			select {
			case r.queue <- line:
				queued = true
			default:
			}
		}
		r.gate.RUnlock()
		switch {
		case queued:
			return nil
		case open:
			r.failed(1, errors.New("the queue is full: the sink is slower than the events"))
			return nil
		}
		// After Close (events of a shutdown) there is no queue to wait in.
	}
	if err := r.write(ctx, [][]byte{line}); err != nil {
		r.failed(1, err)
		return r.refuse(err)
	}
	return nil
}

// refuse is Record's error: ErrUnavailable when the request must fail.
func (r *Recorder) refuse(err error) error {
	if !r.o.Required {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// write is one bounded Write.
func (r *Recorder) write(ctx context.Context, lines [][]byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.Timeout)
	defer cancel()
	return r.sink.Write(ctx, lines)
}

// drain writes the queue in batches until Close.
func (r *Recorder) drain() {
	defer close(r.done)
	batch := make([][]byte, 0, r.o.Batch)
	for line := range r.queue {
		batch = append(batch[:0], line)
	more:
		for len(batch) < r.o.Batch {
			select {
			case l, ok := <-r.queue:
				if !ok {
					break more
				}
				batch = append(batch, l)
			default:
				break more
			}
		}
		if err := r.write(context.Background(), batch); err != nil {
			r.failed(len(batch), err)
		}
	}
}

// failed counts and logs n events that were not recorded; the log says so
// once per burst (again after a minute without failures).
func (r *Recorder) failed(n int, err error) {
	if r.o.Failed != nil {
		r.o.Failed(n)
	}
	r.mu.Lock()
	now := time.Now()
	first := now.Sub(r.lastLog) > time.Minute
	r.lastLog = now
	r.mu.Unlock()
	if first {
		r.o.Logger.Error("audit events could not be recorded", "events", n, "err", err, "required", r.o.Required,
			"hint", "see tokensvc_audit_write_failures_total; with TOKENSVC_AUDIT_REQUIRED=true such requests fail with 503")
	}
}

// Close writes what is queued and stops the writer, waiting at most until
// ctx ends. Events recorded afterwards are written at once. It is safe to
// call more than once.
func (r *Recorder) Close(ctx context.Context) error {
	if r == nil {
		return nil
	}
	r.gate.Lock()
	if !r.closed && r.queue != nil {
		close(r.queue)
	}
	r.closed = true
	r.gate.Unlock()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: events still queued at exit: %w", ctx.Err())
	}
}
