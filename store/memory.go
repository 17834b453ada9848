package store

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Memory stores records in this process, with the semantics of the Redis
// store: expiry to the millisecond, atomic uses, tombstones, key epochs,
// markers. It
// serves one instance without Redis; its records are lost when the
// process exits.
type Memory struct {
	now     func() time.Time
	mu      sync.Mutex
	recs    map[ID]*memRecord
	epochs  map[string]uint64
	markers map[ID]memMarker
	keyIDs  map[string]bool
	stop    chan struct{}
	once    sync.Once
}

type memMarker struct {
	value    []byte
	deadline time.Time
}

type memRecord struct {
	rec       Record
	deadline  time.Time // when the entry disappears: expiry, or idle expiry
	exhausted time.Time // when the uses ran out, for the reuse grace
	taken     bool      // a revoked tombstone that Take left and Restore may undo
	history   []Entry   // with rec.History: the newest HistorySize entries
}

// add puts an entry in the history, if the record keeps one.
func (e *memRecord) add(at time.Time, note string, refused error) {
	if !e.rec.History {
		return
	}
	en := Entry{At: time.UnixMilli(at.UnixMilli()), Note: note, Refused: refused}
	if len(e.history) < HistorySize {
		e.history = append(e.history, en)
		return
	}
	copy(e.history, e.history[1:])
	e.history[HistorySize-1] = en
}

// NewMemory returns an empty store. now is the clock (nil means time.Now).
// A goroutine drops expired records and markers every sweep (default one
// minute) until Close; they are invisible once expired, before they are
// dropped.
func NewMemory(now func() time.Time, sweep time.Duration) *Memory {
	if now == nil {
		now = time.Now
	}
	if sweep <= 0 {
		sweep = time.Minute
	}
	m := &Memory{now: now, recs: make(map[ID]*memRecord), epochs: make(map[string]uint64), markers: make(map[ID]memMarker), stop: make(chan struct{})}
	go m.sweep(sweep)
	return m
}

// lookup returns the entry under id if it has not expired. Callers hold mu.
func (m *Memory) lookup(id ID) (*memRecord, bool) {
	e, ok := m.recs[id]
	if !ok || !m.now().Before(e.deadline) {
		return nil, false
	}
	return e, true
}

// Put stores rec under id, its history starting with note; ErrExists
// when id is taken.
func (m *Memory) Put(_ context.Context, id ID, rec Record, note string) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if err := ValidateNote(note); err != nil {
		return err
	}
	rec.Bundle = clone(rec.Bundle)
	rec.Private = clone(rec.Private)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.lookup(id); ok {
		return ErrExists
	}
	if e := m.epochs[rec.KeyID]; !rec.ContinuesSession() || e < rec.KeyEpoch {
		rec.KeyEpoch = e
	}
	e := &memRecord{rec: rec, deadline: rec.CreatedAt.Add(rec.InitialTTL())}
	e.add(rec.CreatedAt, note, nil)
	m.recs[id] = e
	return nil
}

// Get returns the record or tombstone under id without using it.
func (m *Memory) Get(_ context.Context, id ID) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.get(id)
}

// GetMany is Get for each id, in order; see redisstore.Store.GetMany.
func (m *Memory) GetMany(_ context.Context, ids []ID) []Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Result, len(ids))
	for i, id := range ids {
		out[i].Record, out[i].Err = m.get(id)
	}
	return out
}

func (m *Memory) get(id ID) (Record, error) {
	e, ok := m.lookup(id)
	if !ok {
		return Record{}, ErrNotFound
	}
	if m.keyRevoked(e) {
		return Record{State: Revoked, KeyID: e.rec.KeyID, History: e.rec.History}, nil
	}
	return e.rec, nil
}

// Consume uses the token once; see redisstore.Store.Consume.
func (m *Memory) Consume(_ context.Context, id ID, now time.Time, note string) (Record, error) {
	if err := ValidateNote(note); err != nil {
		return Record{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.consume(id, now, note)
}

func (m *Memory) consume(id ID, now time.Time, note string) (Record, error) {
	e, err := m.live(id, now)
	if errors.Is(err, ErrUsed) || errors.Is(err, ErrRevoked) {
		e.add(now, note, err)
		return e.rec, err
	}
	if err != nil {
		return Record{}, err
	}
	r := &e.rec
	if m.spent(e, now) {
		e.tombstone(Used)
		e.add(now, note, ErrUsed)
		return e.rec, ErrUsed
	}
	out := *r
	if r.MaxUses > 0 && r.Uses < r.MaxUses {
		r.Uses++
		out.Uses = r.Uses
		if r.Uses == r.MaxUses {
			e.exhausted = now
			if r.ReuseGrace == 0 {
				e.tombstone(Used)
			}
		}
	}
	if r.IdleTTL > 0 {
		e.deadline = minTime(now.Add(r.IdleTTL), r.ExpiresAt)
	}
	e.add(now, note, nil)
	return out, nil
}

// ConsumeMany is Consume for each id, in order.
func (m *Memory) ConsumeMany(_ context.Context, ids []ID, now time.Time, note string) []Result {
	out := make([]Result, len(ids))
	if err := ValidateNote(note); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, id := range ids {
		out[i].Record, out[i].Err = m.consume(id, now, note)
	}
	return out
}

// Take ends a live token and returns it; see redisstore.Store.Take.
func (m *Memory) Take(_ context.Context, id ID, now time.Time) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.live(id, now)
	if errors.Is(err, ErrUsed) || errors.Is(err, ErrRevoked) {
		return e.rec, err
	}
	if err != nil {
		return Record{}, err
	}
	if r := e.rec; r.MaxUses > 0 && r.Uses >= r.MaxUses {
		// Even within the reuse grace; see redisstore.Store.Take.
		return Record{State: Used, KeyID: r.KeyID, History: r.History}, ErrUsed
	}
	out := e.rec
	e.tombstone(Revoked)
	e.taken = true
	return out, nil
}

// Restore puts back a record that Take ended, if the token has not been
// revoked since; see redisstore.Store.Restore.
func (m *Memory) Restore(_ context.Context, id ID, rec Record) error {
	if rec.State != Live {
		return errors.New("store: only live records can be restored")
	}
	rec.Bundle = clone(rec.Bundle)
	rec.Private = clone(rec.Private)
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(id)
	switch {
	case !ok:
		return ErrNotFound
	case e.taken:
		// The deadline stays: the record keeps the TTL it had.
		e.rec, e.taken, e.exhausted = rec, false, time.Time{}
		return nil
	case e.rec.State == Used:
		return ErrUsed
	case e.rec.State == Revoked:
		return ErrRevoked
	}
	return ErrExists
}

// Revoke ends a token now; see redisstore.Store.Revoke.
func (m *Memory) Revoke(_ context.Context, id ID, now time.Time, note string) error {
	if err := ValidateNote(note); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.lookup(id); ok && e.taken {
		e.taken = false // revoked for good: Restore no longer undoes it
		e.add(now, note, nil)
		return nil
	}
	e, err := m.live(id, now)
	switch {
	case errors.Is(err, ErrUsed), errors.Is(err, ErrRevoked):
		e.add(now, note, nil)
		return nil
	case err != nil:
		return err
	}
	e.tombstone(Revoked)
	e.add(now, note, nil)
	return nil
}

// Annotate adds each note to its token's history; see
// redisstore.Store.Annotate.
func (m *Memory) Annotate(_ context.Context, now time.Time, notes ...Note) error {
	for _, n := range notes {
		if err := ValidateNote(n.Text); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range notes {
		if e, ok := m.lookup(n.ID); ok {
			e.add(now, n.Text, nil)
		}
	}
	return nil
}

// History returns the token's history, oldest first; see
// redisstore.Store.History.
func (m *Memory) History(_ context.Context, id ID) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(id)
	if !ok {
		return nil, nil
	}
	return append([]Entry(nil), e.history...), nil
}

// KeyIDs lists the ids SetKeyIDs recorded, sorted.
func (m *Memory) KeyIDs(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.keyIDs))
	for id := range m.keyIDs {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// SetKeyIDs records add and forgets remove.
func (m *Memory) SetKeyIDs(_ context.Context, add, remove []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keyIDs == nil {
		m.keyIDs = map[string]bool{}
	}
	for _, id := range add {
		m.keyIDs[id] = true
	}
	for _, id := range remove {
		delete(m.keyIDs, id)
	}
	return nil
}

// RevokeKey moves the key's epoch on; see redisstore.Store.RevokeKey.
func (m *Memory) RevokeKey(_ context.Context, keyID string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epochs[keyID]++
	return m.epochs[keyID], nil
}

// PutMarker stores value under name for ttl; see redisstore.Store.PutMarker.
func (m *Memory) PutMarker(_ context.Context, name ID, value []byte, ttl time.Duration) error {
	if err := ValidateMarker(value, ttl); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if mk, ok := m.markers[name]; ok && now.Before(mk.deadline) {
		return ErrExists
	}
	m.markers[name] = memMarker{value: append([]byte{}, value...), deadline: now.Add(ttl.Truncate(time.Millisecond))}
	return nil
}

// GetMarker returns the value of the marker called name; see
// redisstore.Store.GetMarker.
func (m *Memory) GetMarker(_ context.Context, name ID) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mk, ok := m.markers[name]
	if !ok || !m.now().Before(mk.deadline) {
		return nil, ErrNotFound
	}
	return append([]byte{}, mk.value...), nil
}

// Ping always succeeds: the store is this process.
func (m *Memory) Ping(context.Context) error { return nil }

// Close stops the sweeper. The store stays usable.
func (m *Memory) Close() error {
	m.once.Do(func() { close(m.stop) })
	return nil
}

// live returns the live entry under id, or why there is none (with the
// tombstone's entry for ErrUsed and ErrRevoked).
func (m *Memory) live(id ID, now time.Time) (*memRecord, error) {
	e, ok := m.lookup(id)
	switch {
	case !ok || (e.rec.State == Live && !now.Before(e.rec.ExpiresAt)):
		return nil, ErrNotFound
	case e.rec.State == Used:
		return e, ErrUsed
	case e.rec.State == Revoked:
		return e, ErrRevoked
	case m.keyRevoked(e):
		e.tombstone(Revoked)
		return e, ErrRevoked
	}
	return e, nil
}

// keyRevoked says the minting key's epoch moved on since the mint.
func (m *Memory) keyRevoked(e *memRecord) bool {
	return e.rec.State == Live && e.rec.KeyEpoch < m.epochs[e.rec.KeyID]
}

// spent says the uses ran out and any grace after the last one is over.
func (m *Memory) spent(e *memRecord, now time.Time) bool {
	r := e.rec
	return r.MaxUses > 0 && r.Uses >= r.MaxUses && !(!e.exhausted.IsZero() && !now.After(e.exhausted.Add(r.ReuseGrace)))
}

// tombstone keeps only the state, the key id and the history, like the
// Redis store.
func (e *memRecord) tombstone(s State) {
	e.rec, e.taken = Record{State: s, KeyID: e.rec.KeyID, History: e.rec.History}, false
}

func (m *Memory) sweep(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.mu.Lock()
			for id := range m.recs {
				if _, ok := m.lookup(id); !ok {
					delete(m.recs, id)
				}
			}
			now := m.now()
			for name, mk := range m.markers {
				if !now.Before(mk.deadline) {
					delete(m.markers, name)
				}
			}
			m.mu.Unlock()
		}
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
