package store

import (
	"context"
	"sync"
	"time"
)

// Memory stores records in this process, with the same TTL semantics as
// Redis: a record is gone once its ExpiresAt has passed. It serves one
// instance without Redis; its records are lost when the process exits.
type Memory struct {
	now  func() time.Time
	mu   sync.RWMutex
	recs map[ID]Record
	stop chan struct{}
	once sync.Once
}

// NewMemory returns an empty store. now is the clock (nil means time.Now).
// A goroutine drops expired records every sweep (default one minute) until
// Close; expired records are invisible before they are dropped.
func NewMemory(now func() time.Time, sweep time.Duration) *Memory {
	if now == nil {
		now = time.Now
	}
	if sweep <= 0 {
		sweep = time.Minute
	}
	m := &Memory{now: now, recs: make(map[ID]Record), stop: make(chan struct{})}
	go m.sweep(sweep)
	return m
}

// Put stores rec under id until rec.ExpiresAt; ErrExists when id is live.
func (m *Memory) Put(_ context.Context, id ID, rec Record) error {
	if err := rec.validate(); err != nil {
		return err
	}
	rec.Bundle = append([]byte(nil), rec.Bundle...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.recs[id]; ok && m.live(old) {
		return ErrExists
	}
	m.recs[id] = rec
	return nil
}

// Get returns the live record under id, or ErrNotFound.
func (m *Memory) Get(_ context.Context, id ID) (Record, error) {
	m.mu.RLock()
	rec, ok := m.recs[id]
	m.mu.RUnlock()
	if !ok || !m.live(rec) {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

// Delete removes the live record under id, or answers ErrNotFound.
func (m *Memory) Delete(_ context.Context, id ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs[id]
	delete(m.recs, id)
	if !ok || !m.live(rec) {
		return ErrNotFound
	}
	return nil
}

// Ping always succeeds: the store is this process.
func (m *Memory) Ping(context.Context) error { return nil }

// Close stops the sweeper. The store stays usable.
func (m *Memory) Close() error {
	m.once.Do(func() { close(m.stop) })
	return nil
}

func (m *Memory) live(rec Record) bool { return m.now().Before(rec.ExpiresAt) }

func (m *Memory) sweep(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.mu.Lock()
			for id, rec := range m.recs {
				if !m.live(rec) {
					delete(m.recs, id)
				}
			}
			m.mu.Unlock()
		}
	}
}
