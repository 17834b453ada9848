package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// AuditKey follows the prefix in the audit stream's key: <prefix>audit.
const AuditKey = "audit"

// DefaultAuditMaxLen is the default of AuditOptions.MaxLen.
const DefaultAuditMaxLen = 100_000

// auditField is the stream entry's one field, holding the event's line.
const auditField = "e"

// AuditOptions configure an AuditStream.
type AuditOptions struct {
	// Prefix starts the stream's key, as the store's. Default DefaultPrefix.
	Prefix string
	// MaxLen is about how many events the stream keeps: each XADD trims it
	// with MAXLEN ~, which Redis does a whole node of entries at a time,
	// so it may hold somewhat more. Default DefaultAuditMaxLen.
	MaxLen int64
}

// AuditStream is the audit trail as a Redis Stream, <prefix>audit, shared
// by every instance on the same Redis and prefix. It is a server/audit
// Sink. It is one key, so on a Cluster it lives on the master that owns
// its hash slot (the slot of "<prefix>audit"), and every instance writes
// its events to that node.
type AuditStream struct {
	c      redis.UniversalClient
	key    string
	maxLen int64
}

// NewAuditStream returns the stream on c. It does not contact Redis.
func NewAuditStream(c redis.UniversalClient, o AuditOptions) (*AuditStream, error) {
	if c == nil {
		return nil, errors.New("redisstore: nil Redis client")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.MaxLen < 0 {
		return nil, errors.New("redisstore: negative audit MaxLen")
	}
	if o.MaxLen == 0 {
		o.MaxLen = DefaultAuditMaxLen
	}
	return &AuditStream{c: c, key: o.Prefix + AuditKey, maxLen: o.MaxLen}, nil
}

// Key is the stream's key.
func (a *AuditStream) Key() string { return a.key }

// Write appends each line as an entry, in order, in one pipeline (one
// round trip), each XADD trimming the stream to about MaxLen.
func (a *AuditStream) Write(ctx context.Context, lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	_, err := a.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, l := range lines {
			p.XAdd(ctx, &redis.XAddArgs{Stream: a.key, MaxLen: a.maxLen, Approx: true, Values: []any{auditField, l}})
		}
		return nil
	})
	if err != nil {
		return wrap("audit", err)
	}
	return nil
}

// AuditEntry is one event of the stream: its entry id (Unix ms, a dash,
// a sequence number) and its JSON line.
type AuditEntry struct {
	ID   string
	Line string
}

// Read returns up to count entries after the entry id after ("0" for the
// start, or "<Unix ms>-0" for a time). With block above 0 it waits that
// long for an entry when there is none yet; an empty answer means none
// came.
func (a *AuditStream) Read(ctx context.Context, after string, count int64, block time.Duration) ([]AuditEntry, error) {
	args := &redis.XReadArgs{Streams: []string{a.key, after}, Count: count, Block: -1}
	if block > 0 {
		args.Block = block
	}
	res, err := a.c.XRead(ctx, args).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, wrap("audit read", err)
	}
	var out []AuditEntry
	for _, st := range res {
		for _, m := range st.Messages {
			line, ok := m.Values[auditField].(string)
			if !ok {
				return out, fmt.Errorf("redisstore: audit entry %s has no %q field", m.ID, auditField)
			}
			out = append(out, AuditEntry{ID: m.ID, Line: line})
		}
	}
	return out, nil
}
