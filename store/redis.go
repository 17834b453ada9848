package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "tokensvc:"

// Options configure a Redis store.
type Options struct {
	// Prefix starts every key the store writes. Default DefaultPrefix.
	// Instances that share a prefix share their tokens.
	Prefix string
}

// Redis stores records in Redis: one node, Sentinel or Cluster, as the
// client is configured. Each record is one string key whose TTL is set in the
// same command that writes it, so expiry is Redis's job.
//
// Key schema (see also package migrations): <prefix>t:<16 raw ID bytes>.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis returns a store on c. It does not contact Redis.
func NewRedis(c redis.UniversalClient, opts Options) (*Redis, error) {
	if c == nil {
		return nil, errors.New("store: nil Redis client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	return &Redis{c: c, prefix: opts.Prefix}, nil
}

func (s *Redis) key(id ID) string { return s.prefix + "t:" + string(id[:]) }

// Put stores rec under id for rec.TTL(). It fails with ErrExists when id is
// taken and ErrUnavailable when Redis does not answer.
func (s *Redis) Put(ctx context.Context, id ID, rec Record) error {
	if err := rec.validate(); err != nil {
		return err
	}
	err := s.c.SetArgs(ctx, s.key(id), encodeRecord(rec), redis.SetArgs{Mode: "NX", TTL: rec.TTL()}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return ErrExists
	case err != nil:
		return wrap("put", err)
	}
	return nil
}

// Get returns the live record under id, ErrNotFound when there is none, or
// ErrUnavailable when Redis does not answer.
func (s *Redis) Get(ctx context.Context, id ID) (Record, error) {
	b, err := s.c.Get(ctx, s.key(id)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return Record{}, ErrNotFound
	case err != nil:
		return Record{}, wrap("get", err)
	}
	rec, err := decodeRecord(b)
	if err != nil {
		return Record{}, fmt.Errorf("store: get: %w", err)
	}
	return rec, nil
}

// Delete removes the record under id: ErrNotFound when there is none.
func (s *Redis) Delete(ctx context.Context, id ID) error {
	n, err := s.c.Del(ctx, s.key(id)).Result()
	switch {
	case err != nil:
		return wrap("delete", err)
	case n == 0:
		return ErrNotFound
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

// wrap marks outages as ErrUnavailable. Redis replies that mean "not now"
// (loading, failover, read-only replica) are outages too; other replies
// are bugs and stay plain errors.
func wrap(op string, err error) error {
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
