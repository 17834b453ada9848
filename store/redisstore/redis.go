// Package redisstore keeps token records in Redis (one node, Sentinel or
// Cluster, through a go-redis UniversalClient): Store, the store that any
// number of service instances share, and Limiter, the rate limits they
// share, under the same key prefix. The records, the sentinel errors and
// the in-memory store are package store's, which imports no Redis client;
// go-redis comes in here.
//
// The key schema (schema.go) and the record envelope that the Lua scripts
// read (codec.go, scripts.go) make up the keyspace layout, which package
// migrations versions and documents.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store"
)

// DefaultPrefix is the key prefix used when Options.Prefix (or
// LimiterOptions.Prefix) is empty.
const DefaultPrefix = "tokensvc:"

// DefaultReplicaTimeout is the default of Options.ReplicaTimeout.
const DefaultReplicaTimeout = 500 * time.Millisecond

// Options configure a Store.
type Options struct {
	// Prefix starts every key the store writes. Default DefaultPrefix.
	// Instances that share a prefix share their tokens.
	Prefix string
	// Replicas, if above 0, makes every write wait (Redis WAIT) until that
	// many replicas have it, at most ReplicaTimeout; fewer acknowledgements
	// are store.ErrUnavailable. Default 0: a write is acknowledged by the
	// primary.
	Replicas int
	// ReplicaTimeout bounds the WAIT. Default DefaultReplicaTimeout.
	ReplicaTimeout time.Duration
	// AutoPipeline sends the single-record scripts (mint, use, peek, take,
	// revoke) through go-redis's automatic pipelining: commands of
	// concurrent requests share writes and reads on the wire. Ignored with
	// Replicas, whose WAIT must follow its write on one connection.
	AutoPipeline bool
}

// Store keeps records in Redis: one node, Sentinel or Cluster, as the
// client is configured. Each record is one string key whose TTL is set in
// the same command that writes it, so expiry is Redis's job; every change
// to a record is one Lua script on that one key, so it is atomic on a
// Cluster too.
//
// Key schema (see package migrations): <prefix>{g}t:<16 raw ID bytes> for
// records, <prefix>{g}e:<key id> for partner keys' revocation epochs and
// <prefix>{g}i:<16 raw name bytes> for markers, where {g} is a hash tag
// naming one of 256 groups (the ID's or name's first byte). A key's epoch
// is kept once per group, so every record shares a hash slot with the
// epoch it is checked against: mint and use are each one script, one round
// trip, atomic on a Cluster too.
type Store struct {
	c              redis.UniversalClient
	scripts        redis.Scripter // c, or its automatic pipeline
	prefix         string
	replicas       int
	replicaTimeout time.Duration
	epochKeys      [256]string // epochs, by group: made once, not per call
}

// New returns a store on c. It does not contact Redis.
func New(c redis.UniversalClient, opts Options) (*Store, error) {
	if c == nil {
		return nil, errors.New("store: nil Redis client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Replicas < 0 {
		return nil, errors.New("store: negative Replicas")
	}
	if opts.ReplicaTimeout <= 0 {
		opts.ReplicaTimeout = DefaultReplicaTimeout
	}
	r := &Store{c: c, scripts: c, prefix: opts.Prefix, replicas: opts.Replicas, replicaTimeout: opts.ReplicaTimeout}
	for g := range r.epochKeys {
		r.epochKeys[g] = opts.Prefix + groups[g] + EpochInfix
	}
	if opts.AutoPipeline && opts.Replicas == 0 {
		ap, ok := c.(interface {
			AutoPipeline() (*redis.AutoPipeliner, error)
		})
		if !ok {
			return nil, errors.New("store: this client cannot pipeline automatically")
		}
		pipe, err := ap.AutoPipeline()
		if err != nil {
			return nil, fmt.Errorf("store: automatic pipelining: %w", err)
		}
		r.scripts = pipe
	}
	return r, nil
}

// groups are the 256 hash tags, "{00}" to "{ff}", made once.
var groups = func() (g [256]string) {
	const hexDigits = "0123456789abcdef"
	for i := range g {
		g[i] = string([]byte{'{', hexDigits[i>>4], hexDigits[i&15], '}'})
	}
	return g
}()

// group is the hash tag of the ID's group.
func group(id store.ID) string { return groups[id[0]] }

func (s *Store) key(id store.ID) string { return s.prefix + group(id) + RecordInfix + string(id[:]) }

// epochs is the name of id's group's epoch keys, up to the key id.
func (s *Store) epochs(id store.ID) string { return s.epochKeys[id[0]] }

// hist is the name of the record's history, in its hash slot.
func (s *Store) hist(id store.ID) string {
	return s.prefix + group(id) + HistoryInfix + string(id[:])
}

func (s *Store) marker(name store.ID) string {
	return s.prefix + group(name) + MarkerInfix + string(name[:])
}

// Put stores rec under id, and with rec.History starts its history with
// note, in the same script. It fails with store.ErrExists when id is
// taken.
func (s *Store) Put(ctx context.Context, id store.ID, rec store.Record, note string) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if err := store.ValidateNote(note); err != nil {
		return err
	}
	first := ""
	if rec.History {
		first = entry(rec.CreatedAt, note)
	}
	args := []any{encodeRecord(rec), rec.InitialTTL().Milliseconds(), first}
	if rec.ContinuesSession() {
		args = append(args, rec.KeyEpoch)
	}
	v, err := s.script(ctx, put, []string{s.key(id), s.epochs(id) + rec.KeyID, s.hist(id)}, args...)
	switch {
	case err != nil:
		return wrap("put", err)
	case v[0] == int64(0):
		return store.ErrExists
	}
	return nil
}

// Get returns the record under id without using it: a live record, or a
// tombstone (State store.Used or store.Revoked). store.ErrNotFound when
// there is none.
func (s *Store) Get(ctx context.Context, id store.ID) (store.Record, error) {
	v, err := s.script(ctx, peek, []string{s.key(id)}, time.Now().UnixMilli(), s.epochs(id))
	return peekResult("get", v, err)
}

// Consume uses the token once, atomically: it counts the use, slides the
// idle expiry, adds the use (or its refusal) to the history with note, and
// returns the record with the use counted. Errors: store.ErrNotFound,
// store.ErrUsed, store.ErrRevoked (with the tombstone),
// store.ErrUnavailable.
func (s *Store) Consume(ctx context.Context, id store.ID, now time.Time, note string) (store.Record, error) {
	if err := store.ValidateNote(note); err != nil {
		return store.Record{}, err
	}
	v, err := s.script(ctx, consume, []string{s.key(id), s.hist(id)}, now.UnixMilli(), s.epochs(id), note)
	return scriptResult("consume", v, err)
}

// ConsumeMany is Consume for many tokens in one pipeline: one round trip
// per Redis node, not per token. Results are in the order of ids.
func (s *Store) ConsumeMany(ctx context.Context, ids []store.ID, now time.Time, note string) []store.Result {
	out := make([]store.Result, len(ids))
	if err := store.ValidateNote(note); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	s.pipeline(ctx, consume, ids, now, note, true, func(i int, v []any, err error) {
		out[i].Record, out[i].Err = scriptResult("consume many", v, err)
	})
	return out
}

// GetMany is Get for many ids in one pipeline: one round trip per Redis
// node, not per id. It counts no use. Results are in the order of ids: Err
// is store.ErrNotFound for an id with no record, else Record is the live
// record or the tombstone, as Get. It reads only, so it does not WAIT for
// replicas.
func (s *Store) GetMany(ctx context.Context, ids []store.ID) []store.Result {
	out := make([]store.Result, len(ids))
	s.pipeline(ctx, peek, ids, time.Now(), "", false, func(i int, v []any, err error) {
		out[i].Record, out[i].Err = peekResult("get many", v, err)
	})
	return out
}

// Take ends a live token and returns it (for a refresh): the token is
// revoked by the same atomic step that reads it. A token with a use limit
// needs a use left: one whose uses ran out is store.ErrUsed even within its
// reuse grace, and is left as it is (it still verifies within the grace).
// Errors: store.ErrNotFound, store.ErrUsed, store.ErrRevoked,
// store.ErrUnavailable.
func (s *Store) Take(ctx context.Context, id store.ID, now time.Time) (store.Record, error) {
	v, err := s.script(ctx, take, []string{s.key(id)}, now.UnixMilli(), s.epochs(id))
	return scriptResult("take", v, err)
}

// Restore undoes a Take whose follow-up failed: it puts rec (what Take
// returned) back under id, with the TTL the record had, only if the
// tombstone Take left is still there, checked in the same atomic step.
// Errors: store.ErrRevoked when the token was revoked since the Take
// (nothing changes), store.ErrNotFound when nothing is there any more,
// store.ErrExists when a live record is (restored already), store.ErrUsed
// for a used tombstone (there was no Take), store.ErrUnavailable. A key
// revoked since the Take still revokes the restored record: it keeps its
// epoch.
func (s *Store) Restore(ctx context.Context, id store.ID, rec store.Record) error {
	if rec.State != store.Live {
		return errors.New("store: only live records can be restored")
	}
	v, err := s.script(ctx, restore, []string{s.key(id)}, encodeRecord(rec))
	if err != nil {
		return wrap("restore", err)
	}
	code, _ := v[0].(int64)
	switch code {
	case 0:
		return store.ErrNotFound
	case 2:
		return store.ErrUsed
	case 3:
		return store.ErrRevoked
	case 4:
		return store.ErrExists
	}
	return nil
}

// Revoke ends a token now, and says so in its history with note.
// Revoking a used or revoked token succeeds, and so does revoking a token
// Take ended: Restore will not bring it back. store.ErrNotFound when there
// is no token.
func (s *Store) Revoke(ctx context.Context, id store.ID, now time.Time, note string) error {
	if err := store.ValidateNote(note); err != nil {
		return err
	}
	v, err := s.script(ctx, revoke, []string{s.key(id), s.hist(id)}, now.UnixMilli(), s.epochs(id), note)
	switch {
	case err != nil:
		return wrap("revoke", err)
	case v[0] == int64(0):
		return store.ErrNotFound
	}
	return nil // revoked now, or used or revoked already
}

// KeyIDs lists the ids SetKeyIDs recorded: the set <prefix>keys.
func (s *Store) KeyIDs(ctx context.Context) ([]string, error) {
	ids, err := s.c.SMembers(ctx, s.prefix+KeyIDsKey).Result()
	if err != nil {
		return nil, wrap("key ids", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// SetKeyIDs adds add to the set <prefix>keys and removes remove from it,
// in one pipeline (one key: one node on a Cluster).
func (s *Store) SetKeyIDs(ctx context.Context, add, remove []string) error {
	if len(add)+len(remove) == 0 {
		return nil
	}
	key := s.prefix + KeyIDsKey
	err := s.durably(ctx, key, func(p redis.Pipeliner) {
		if len(add) > 0 {
			p.SAdd(ctx, key, toAny(add)...)
		}
		if len(remove) > 0 {
			p.SRem(ctx, key, toAny(remove)...)
		}
	})
	if err != nil {
		return wrap("set key ids", err)
	}
	return nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, v := range ss {
		out[i] = v
	}
	return out
}

// RevokeKey moves the key's epoch on in every group, revoking every token
// the key minted so far, for every instance sharing the store: 256 INCRs,
// pipelined (one round trip per node), whatever the number of tokens. It
// returns the new epoch.
func (s *Store) RevokeKey(ctx context.Context, keyID string) (uint64, error) {
	keys := make([]string, 256)
	for g := range keys {
		var id store.ID
		id[0] = byte(g)
		keys[g] = s.epochs(id) + keyID
	}
	var epoch int64
	if _, cluster := s.c.(*redis.ClusterClient); cluster && s.replicas > 0 {
		// WAIT must follow each write on its own node's connection.
		for _, k := range keys {
			var cmd *redis.IntCmd
			if err := s.durably(ctx, k, func(p redis.Pipeliner) { cmd = p.Incr(ctx, k) }); err != nil {
				return 0, wrap("revoke key", err)
			}
			epoch = max(epoch, cmd.Val())
		}
		return uint64(epoch), nil
	}
	cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Incr(ctx, k)
		}
		if s.replicas > 0 {
			p.Do(ctx, "WAIT", s.replicas, s.replicaTimeout.Milliseconds())
		}
		return nil
	})
	if err == nil && s.replicas > 0 {
		err = waited(cmds[len(cmds)-1], s.replicas)
		cmds = cmds[:len(cmds)-1]
	}
	if err != nil {
		return 0, wrap("revoke key", err)
	}
	for _, c := range cmds {
		epoch = max(epoch, c.(*redis.IntCmd).Val())
	}
	return uint64(epoch), nil
}

// PutMarker stores value under name for ttl (to the millisecond), unless a
// marker has the name: store.ErrExists then, and that marker stays as it
// was. With Replicas it waits for them like Put. value is at most
// store.MaxMarkerSize bytes, and ttl is between a millisecond and
// store.MaxTTL. Errors: store.ErrExists, store.ErrUnavailable (store.ErrFull
// when Redis is out of memory).
func (s *Store) PutMarker(ctx context.Context, name store.ID, value []byte, ttl time.Duration) error {
	if err := store.ValidateMarker(value, ttl); err != nil {
		return err
	}
	key := s.marker(name)
	var cmd *redis.BoolCmd
	if err := s.durably(ctx, key, func(p redis.Pipeliner) {
		cmd = p.SetNX(ctx, key, value, ttl.Truncate(time.Millisecond))
	}); err != nil {
		return wrap("put marker", err)
	}
	if !cmd.Val() {
		return store.ErrExists
	}
	return nil
}

// GetMarker returns the value of the marker called name. Errors:
// store.ErrNotFound when there is none (never stored, or expired),
// store.ErrUnavailable.
func (s *Store) GetMarker(ctx context.Context, name store.ID) ([]byte, error) {
	b, err := s.c.Get(ctx, s.marker(name)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, wrap("get marker", err)
	}
	return b, nil
}

// Close stops the automatic pipeline, if any. It does not close the
// client, which belongs to the caller.
func (s *Store) Close() error {
	if ap, ok := s.scripts.(*redis.AutoPipeliner); ok {
		return ap.Close()
	}
	return nil
}

// Ping reports whether Redis answers: nil or store.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return wrap("ping", err)
	}
	return nil
}
