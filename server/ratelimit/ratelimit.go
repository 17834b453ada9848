// Package ratelimit limits how often a thing may happen, by key: a
// generic cell rate algorithm (GCRA), kept in this process (Memory) or,
// so that every instance sharing the store shares the limits, in a Counter
// kept elsewhere (redisstore.Limiter, on Redis) behind Shared. The package
// itself knows nothing of Redis.
//
// Every limiter takes a negative n as a refund: AllowN(ctx, key, l, -k)
// gives back k events' worth of capacity, never beyond a full bucket. A
// caller can reserve the most a request may cost before running it and
// give back what it did not use afterwards.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit allows N events per Per, in bursts of up to N. The zero Limit
// allows everything.
type Limit struct {
	N   int
	Per time.Duration
}

// Zero reports whether the limit is off.
func (l Limit) Zero() bool { return l.N <= 0 || l.Per <= 0 }

func (l Limit) String() string {
	if l.Zero() {
		return "off"
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[l.Per]
	return fmt.Sprintf("%d/%s", l.N, unit)
}

// Parse reads "N/s", "N/m" or "N/h"; "", "0" and "off" are no limit.
func Parse(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || s == "off" {
		return Limit{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	per, known := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	if !ok || err != nil || n < 1 || !known {
		return Limit{}, errors.New("want N/s, N/m or N/h (for example 100/m), or off")
	}
	return Limit{N: n, Per: per}, nil
}

// Decision is the answer to one request for events.
type Decision struct {
	Allowed bool
	// RetryAfter is how long until the events would be allowed; 0 when
	// they were. More than the limit's N at once are never allowed; they
	// get the wait as if the bucket could hold them, in proportion to the
	// excess.
	RetryAfter time.Duration
}

// Counter is a GCRA kept outside this process, in plain values so that
// its package needs none of ours (redisstore.Limiter implements it on
// Redis). AllowN has the semantics of Memory.AllowN for a limit of events
// per per; its errors are the backend's (store.ErrUnavailable for an
// outage).
type Counter interface {
	AllowN(ctx context.Context, key string, events int, per time.Duration, n int) (allowed bool, retryAfter time.Duration, err error)
}

// Shared keeps limits in a Counter, shared by every instance that uses
// the same one.
type Shared struct{ c Counter }

// NewShared returns limits kept in c.
func NewShared(c Counter) *Shared { return &Shared{c: c} }

// AllowN asks for n events of key under l, or gives back -n when n is
// negative (see Memory.AllowN).
func (s *Shared) AllowN(ctx context.Context, key string, l Limit, n int) (Decision, error) {
	if l.Zero() {
		return Decision{Allowed: true}, nil
	}
	ok, wait, err := s.c.AllowN(ctx, key, l.N, l.Per, n)
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: %w", err)
	}
	return Decision{Allowed: ok, RetryAfter: wait}, nil
}

// Memory keeps limits in this process.
type Memory struct {
	now   func() time.Time
	mu    sync.Mutex
	tat   map[string]time.Time // theoretical arrival time, per key
	calls int
}

// NewMemory returns in-process limits on the clock now (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, tat: make(map[string]time.Time)}
}

// AllowN asks for n events of key under l: each costs l.Per/l.N of the
// bucket, which holds l.N and refills at that pace. Refused events cost
// nothing. A negative n is a refund: it gives back -n events' worth, never
// beyond a full bucket, and is always allowed; a key back at a full bucket
// is forgotten.
func (m *Memory) AllowN(_ context.Context, key string, l Limit, n int) (Decision, error) {
	if l.Zero() {
		return Decision{Allowed: true}, nil
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.calls++; m.calls%4096 == 0 {
		m.sweep(now)
	}
	tat := m.tat[key]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(cost(n, l))
	if allowAt := next.Add(-l.Per); n > 0 && now.Before(allowAt) {
		return Decision{RetryAfter: allowAt.Sub(now)}, nil
	}
	if next.After(now) {
		m.tat[key] = next
	} else {
		delete(m.tat, key)
	}
	return Decision{Allowed: true}, nil
}

// cost is what n events take from the bucket: n/l.N of l.Per, rounded away
// from zero, so that events never cost less than the limit says and a
// refund of n gives back exactly what n took.
func cost(n int, l Limit) time.Duration {
	abs := time.Duration(max(n, -n))
	c := (abs*l.Per + time.Duration(l.N) - 1) / time.Duration(l.N)
	if n < 0 {
		return -c
	}
	return c
}

// sweep forgets keys back at their initial state.
func (m *Memory) sweep(now time.Time) {
	for k, t := range m.tat {
		if !t.After(now) {
			delete(m.tat, k)
		}
	}
}
