// Package ratelimit limits how often a thing may happen, by key: a
// generic cell rate algorithm (GCRA) kept in Redis, so every instance
// sharing the store shares the limits, or in this process for the
// embedded store.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
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
	// they were.
	RetryAfter time.Duration
}

// Redis keeps limits in Redis (go-redis/redis_rate), one key per limited
// thing, so they hold across instances and on a Cluster.
type Redis struct {
	l      *redis_rate.Limiter
	prefix string
}

// NewRedis returns limits kept in c under keys starting with prefix.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{l: redis_rate.NewLimiter(c), prefix: prefix}
}

// AllowN asks for n events of key under l.
func (r *Redis) AllowN(ctx context.Context, key string, l Limit, n int) (Decision, error) {
	if l.Zero() {
		return Decision{Allowed: true}, nil
	}
	res, err := r.l.AllowN(ctx, r.prefix+key, redis_rate.Limit{Rate: l.N, Burst: l.N, Period: l.Per}, n)
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: %w", err)
	}
	if res.Allowed >= n {
		return Decision{Allowed: true}, nil
	}
	return Decision{RetryAfter: max(res.RetryAfter, time.Millisecond)}, nil
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

// AllowN asks for n events of key under l.
func (m *Memory) AllowN(_ context.Context, key string, l Limit, n int) (Decision, error) {
	if l.Zero() {
		return Decision{Allowed: true}, nil
	}
	interval := l.Per / time.Duration(l.N)
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
	next := tat.Add(time.Duration(n) * interval)
	if allowAt := next.Add(-l.Per); now.Before(allowAt) {
		return Decision{RetryAfter: allowAt.Sub(now)}, nil
	}
	m.tat[key] = next
	return Decision{Allowed: true}, nil
}

// sweep forgets keys back at their initial state.
func (m *Memory) sweep(now time.Time) {
	for k, t := range m.tat {
		if !t.After(now) {
			delete(m.tat, k)
		}
	}
}
