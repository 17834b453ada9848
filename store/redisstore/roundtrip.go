package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store"
)

// How the store talks to Redis: scripts and pipelines, WAIT for
// replicas, scripts loaded again where Redis lost them, and what Redis's
// answers mean to the store's callers.

// pipeline runs a record script (its keys: the record and its history;
// its arguments: now, the epoch keys and note) on each of ids in one
// pipeline, one round trip per node, and hands each answer to done(i, v,
// err) for ids[i]. A script that writes (write) is followed by WAIT when
// replicas are required; on a Cluster that is one s.script per id
// instead, since WAIT must follow the writes on their own node's
// connection.
func (s *Store) pipeline(ctx context.Context, sc *redis.Script, ids []store.ID, now time.Time, note string, write bool, done func(i int, v []any, err error)) {
	wait := write && s.replicas > 0
	if _, cluster := s.c.(*redis.ClusterClient); cluster && wait {
		for i, id := range ids {
			v, err := s.script(ctx, sc, []string{s.key(id), s.hist(id)}, now.UnixMilli(), s.epochs(id), note)
			done(i, v, err)
		}
		return
	}
	todo := make([]int, len(ids)) // indexes of ids still to run
	for i := range todo {
		todo[i] = i
	}
	failAll := func(err error) {
		for _, i := range todo {
			done(i, nil, err)
		}
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range todo {
				sc.EvalSha(ctx, p, []string{s.key(ids[i]), s.hist(ids[i])}, now.UnixMilli(), s.epochs(ids[i]), note)
			}
			if wait {
				p.Do(ctx, "WAIT", s.replicas, s.replicaTimeout.Milliseconds())
			}
			return nil
		})
		if err != nil && !isReply(err) {
			failAll(err) // nothing answered: a network failure or timeout
			return
		}
		if wait {
			// Also when some script failed: the others wrote.
			if err := waited(cmds[len(cmds)-1], s.replicas); err != nil {
				failAll(err)
				return
			}
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
			done(i, v, err)
		}
		todo = again
		if len(todo) > 0 {
			if err := s.loadScripts(ctx); err != nil {
				failAll(fmt.Errorf("load scripts: %w", err))
				return
			}
		}
	}
}

// durably runs the commands fn queues in one pipeline on the connection
// of the node that holds key, followed by WAIT when replicas are required:
// WAIT counts only the writes of its own connection.
func (s *Store) durably(ctx context.Context, key string, fn func(redis.Pipeliner)) error {
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
func (s *Store) script(ctx context.Context, sc *redis.Script, keys []string, args ...any) ([]any, error) {
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
		return fmt.Errorf("%w: %d of %d replicas acknowledged the write in time", store.ErrUnavailable, n, want)
	}
	return nil
}

func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply)
}

func (s *Store) loadScripts(ctx context.Context) error {
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
func scriptResult(op string, v []any, err error) (store.Record, error) {
	if err != nil {
		return store.Record{}, wrap(op, err)
	}
	code, _ := v[0].(int64)
	switch code {
	case 0:
		return store.Record{}, store.ErrNotFound
	case 2:
		return tombstone(v), store.ErrUsed
	case 3, 4: // revoked, or taken by a Take
		return tombstone(v), store.ErrRevoked
	}
	s, _ := v[1].(string)
	rec, err := decode([]byte(s))
	if err != nil {
		return store.Record{}, err
	}
	if len(v) > 2 {
		uses, _ := v[2].(int64)
		rec.Uses = uint32(uses)
	}
	return rec, nil
}

// tombstone is the tombstone a script answered with a refusal, if any.
func tombstone(v []any) store.Record {
	if len(v) < 2 {
		return store.Record{}
	}
	b, _ := v[1].(string)
	rec, err := decodeRecord([]byte(b))
	if err != nil {
		return store.Record{}
	}
	return rec
}

// peekResult reads the {code, value} answer of peek: a record or a
// tombstone, or store.ErrNotFound.
func peekResult(op string, v []any, err error) (store.Record, error) {
	if err != nil {
		return store.Record{}, wrap(op, err)
	}
	if code, _ := v[0].(int64); code == 0 {
		return store.Record{}, store.ErrNotFound
	}
	b, _ := v[1].(string)
	return decode([]byte(b))
}

func decode(b []byte) (store.Record, error) {
	rec, err := decodeRecord(b)
	if err != nil {
		return store.Record{}, fmt.Errorf("store: %w", err)
	}
	return rec, nil
}

// wrap marks outages as store.ErrUnavailable. Redis replies that mean "not
// now" (loading, failover, read-only replica) are outages too, and a write
// refused for lack of memory (OOM, also from inside a script) is
// store.ErrFull, which is store.ErrUnavailable too; other replies are bugs
// and stay plain errors.
func wrap(op string, err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		switch msg := reply.Error(); {
		case strings.HasPrefix(msg, "OOM "):
			return fmt.Errorf("store: %s: %w: %w", op, store.ErrFull, err)
		case !transient(msg):
			return fmt.Errorf("store: %s: %w", op, err)
		}
	}
	return fmt.Errorf("store: %s: %w: %w", op, store.ErrUnavailable, err)
}

func transient(reply string) bool {
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS"} {
		if strings.HasPrefix(reply, p) {
			return true
		}
	}
	return false
}
