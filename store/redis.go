package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "tokensvc:"

// DefaultReplicaTimeout is the default of Options.ReplicaTimeout.
const DefaultReplicaTimeout = 500 * time.Millisecond

// Options configure a Redis store.
type Options struct {
	// Prefix starts every key the store writes. Default DefaultPrefix.
	// Instances that share a prefix share their tokens.
	Prefix string
	// Replicas, if above 0, makes every write wait (Redis WAIT) until that
	// many replicas have it, at most ReplicaTimeout; fewer acknowledgements
	// are ErrUnavailable. Default 0: a write is acknowledged by the primary.
	Replicas int
	// ReplicaTimeout bounds the WAIT. Default DefaultReplicaTimeout.
	ReplicaTimeout time.Duration
	// AutoPipeline sends the single-record scripts (mint, use, peek, take,
	// revoke) through go-redis's automatic pipelining: commands of
	// concurrent requests share writes and reads on the wire. Ignored with
	// Replicas, whose WAIT must follow its write on one connection.
	AutoPipeline bool
}

// Redis stores records in Redis: one node, Sentinel or Cluster, as the
// client is configured. Each record is one string key whose TTL is set in
// the same command that writes it, so expiry is Redis's job; every change
// to a record is one Lua script on that one key, so it is atomic on a
// Cluster too.
//
// Key schema (see package migrations): <prefix>{g}t:<16 raw ID bytes> for
// records and <prefix>{g}e:<key id> for partner keys' revocation epochs,
// where {g} is a hash tag naming one of 256 groups (the ID's first byte).
// A key's epoch is kept once per group, so every record shares a hash slot
// with the epoch it is checked against: mint and use are each one script,
// one round trip, atomic on a Cluster too.
type Redis struct {
	c              redis.UniversalClient
	scripts        redis.Scripter // c, or its automatic pipeline
	prefix         string
	replicas       int
	replicaTimeout time.Duration
}

// NewRedis returns a store on c. It does not contact Redis.
func NewRedis(c redis.UniversalClient, opts Options) (*Redis, error) {
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
	r := &Redis{c: c, scripts: c, prefix: opts.Prefix, replicas: opts.Replicas, replicaTimeout: opts.ReplicaTimeout}
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
func group(id ID) string { return groups[id[0]] }

func (s *Redis) key(id ID) string { return s.prefix + group(id) + RecordInfix + string(id[:]) }

// epochs is the name of id's group's epoch keys, up to the key id.
func (s *Redis) epochs(id ID) string { return s.prefix + group(id) + EpochInfix }

// Put stores rec under id. It fails with ErrExists when id is taken.
func (s *Redis) Put(ctx context.Context, id ID, rec Record) error {
	if err := rec.validate(); err != nil {
		return err
	}
	v, err := s.script(ctx, put, []string{s.key(id), s.epochs(id) + rec.KeyID}, encodeRecord(rec), rec.initialTTL().Milliseconds())
	switch {
	case err != nil:
		return wrap("put", err)
	case v[0] == int64(0):
		return ErrExists
	}
	return nil
}

// Get returns the record under id without using it: a live record, or a
// tombstone (State Used or Revoked). ErrNotFound when there is none.
func (s *Redis) Get(ctx context.Context, id ID) (Record, error) {
	v, err := s.script(ctx, peek, []string{s.key(id)}, time.Now().UnixMilli(), s.epochs(id))
	if err != nil {
		return Record{}, wrap("get", err)
	}
	if v[0] == int64(0) {
		return Record{}, ErrNotFound
	}
	b, _ := v[1].(string)
	return decode([]byte(b))
}

// Consume uses the token once, atomically: it counts the use, slides the
// idle expiry and returns the record with the use counted. Errors:
// ErrNotFound, ErrUsed, ErrRevoked, ErrUnavailable.
func (s *Redis) Consume(ctx context.Context, id ID, now time.Time) (Record, error) {
	v, err := s.script(ctx, consume, []string{s.key(id)}, now.UnixMilli(), s.epochs(id))
	return scriptResult("consume", v, err)
}

// ConsumeMany is Consume for many tokens in one pipeline: one round trip
// per Redis node, not per token. Results are in the order of ids.
func (s *Redis) ConsumeMany(ctx context.Context, ids []ID, now time.Time) []Result {
	out := make([]Result, len(ids))
	if _, cluster := s.c.(*redis.ClusterClient); cluster && s.replicas > 0 {
		// WAIT must follow the writes on their own node's connection.
		for i, id := range ids {
			out[i].Record, out[i].Err = s.Consume(ctx, id, now)
		}
		return out
	}
	todo := make([]int, len(ids)) // indexes of ids still to run
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range todo {
				consume.EvalSha(ctx, p, []string{s.key(ids[i])}, now.UnixMilli(), s.epochs(ids[i]))
			}
			if s.replicas > 0 {
				p.Do(ctx, "WAIT", s.replicas, s.replicaTimeout.Milliseconds())
			}
			return nil
		})
		if err == nil && s.replicas > 0 {
			err = waited(cmds[len(cmds)-1], s.replicas)
		}
		if err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") && !isReply(err) {
			for _, i := range todo {
				out[i].Err = wrap("consume many", err)
			}
			return out
		}
		// A node that lost its scripts answers NOSCRIPT without running
		// anything: load them and run again only those, never a command
		// that ran (that would count a use twice).
		var again []int
		for j, i := range todo {
			v, err := cmds[j].(*redis.Cmd).Slice()
			if attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
				again = append(again, i)
				continue
			}
			out[i].Record, out[i].Err = scriptResult("consume", v, err)
		}
		if len(again) > 0 {
			if err := s.loadScripts(ctx); err != nil {
				for _, i := range again {
					out[i].Err = wrap("load scripts", err)
				}
				return out
			}
		}
		todo = again
	}
	return out
}

// Take ends a live token and returns it (for a refresh): the token is
// revoked by the same atomic step that reads it.
func (s *Redis) Take(ctx context.Context, id ID, now time.Time) (Record, error) {
	v, err := s.script(ctx, take, []string{s.key(id)}, now.UnixMilli(), s.epochs(id))
	return scriptResult("take", v, err)
}

// Restore puts back a record that Take ended, if its tombstone is still
// there, with the TTL it had. It undoes a Take whose follow-up failed.
func (s *Redis) Restore(ctx context.Context, id ID, rec Record) error {
	key := s.key(id)
	err := s.durably(ctx, key, func(p redis.Pipeliner) {
		p.SetArgs(ctx, key, encodeRecord(rec), redis.SetArgs{Mode: "XX", KeepTTL: true})
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return wrap("restore", err)
	}
	return nil
}

// Revoke ends a token now. Revoking a used or revoked token succeeds;
// ErrNotFound when there is no token.
func (s *Redis) Revoke(ctx context.Context, id ID, now time.Time) error {
	v, err := s.script(ctx, revoke, []string{s.key(id)}, now.UnixMilli(), s.epochs(id))
	switch {
	case err != nil:
		return wrap("revoke", err)
	case v[0] == int64(0):
		return ErrNotFound
	}
	return nil // revoked now, or used or revoked already
}

// RevokeKey moves the key's epoch on in every group, revoking every token
// the key minted so far, for every instance sharing the store: 256 INCRs,
// pipelined (one round trip per node), whatever the number of tokens. It
// returns the new epoch.
func (s *Redis) RevokeKey(ctx context.Context, keyID string) (uint64, error) {
	keys := make([]string, 256)
	for g := range keys {
		var id ID
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

// Close stops the automatic pipeline, if any. It does not close the
// client, which belongs to the caller.
func (s *Redis) Close() error {
	if ap, ok := s.scripts.(*redis.AutoPipeliner); ok {
		return ap.Close()
	}
	return nil
}

// Ping reports whether Redis answers: nil or ErrUnavailable.
func (s *Redis) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// durably runs the commands fn queues in one pipeline on the connection
// of the node that holds key, followed by WAIT when replicas are required:
// WAIT counts only the writes of its own connection.
func (s *Redis) durably(ctx context.Context, key string, fn func(redis.Pipeliner)) error {
	var c redis.Cmdable = s.c
	if cc, ok := s.c.(*redis.ClusterClient); ok && s.replicas > 0 {
		master, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return err
		}
		c = master
	}
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		fn(p)
		if s.replicas > 0 {
			p.Do(ctx, "WAIT", s.replicas, s.replicaTimeout.Milliseconds())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s.replicas > 0 {
		return waited(cmds[len(cmds)-1], s.replicas)
	}
	return nil
}

// script runs a script on key durably, loading the scripts again if Redis
// lost them (restart, failover, SCRIPT FLUSH).
func (s *Redis) script(ctx context.Context, sc *redis.Script, keys []string, args ...any) ([]any, error) {
	if s.replicas == 0 {
		return sc.Run(ctx, s.scripts, keys, args...).Slice()
	}
	for attempt := 0; ; attempt++ {
		var cmd *redis.Cmd
		err := s.durably(ctx, keys[0], func(p redis.Pipeliner) { cmd = sc.EvalSha(ctx, p, keys, args...) })
		if attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := s.loadScripts(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return cmd.Slice()
	}
}

// waited checks a WAIT's answer.
func waited(cmd redis.Cmder, want int) error {
	n, err := cmd.(*redis.Cmd).Int64()
	if err != nil {
		return err
	}
	if n < int64(want) {
		return fmt.Errorf("%w: %d of %d replicas acknowledged the write in time", ErrUnavailable, n, want)
	}
	return nil
}

func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply)
}

func (s *Redis) loadScripts(ctx context.Context) error {
	load := func(ctx context.Context, c *redis.Client) error {
		for _, sc := range scripts {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		return cc.ForEachShard(ctx, load)
	}
	for _, sc := range scripts {
		if err := sc.Load(ctx, s.c).Err(); err != nil {
			return err
		}
	}
	return nil
}

// scriptResult reads the {code, value, uses} answer of the scripts.
func scriptResult(op string, v []any, err error) (Record, error) {
	if err != nil {
		return Record{}, wrap(op, err)
	}
	code, _ := v[0].(int64)
	switch code {
	case 0:
		return Record{}, ErrNotFound
	case 2:
		return Record{}, ErrUsed
	case 3:
		return Record{}, ErrRevoked
	}
	s, _ := v[1].(string)
	rec, err := decode([]byte(s))
	if err != nil {
		return Record{}, err
	}
	if len(v) > 2 {
		uses, _ := v[2].(int64)
		rec.Uses = uint32(uses)
	}
	return rec, nil
}

func decode(b []byte) (Record, error) {
	rec, err := decodeRecord(b)
	if err != nil {
		return Record{}, fmt.Errorf("store: %w", err)
	}
	return rec, nil
}

// wrap marks outages as ErrUnavailable. Redis replies that mean "not now"
// (loading, failover, read-only replica) are outages too; other replies
// are bugs and stay plain errors.
func wrap(op string, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	var reply redis.Error
	if errors.As(err, &reply) && !transient(reply.Error()) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
}

func transient(reply string) bool {
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS"} {
		if strings.HasPrefix(reply, p) {
			return true
		}
	}
	return false
}
