package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store"
)

// A record's history is a Redis list, <prefix>{g}h:<id>, in the record's
// hash slot: the scripts that change the record (put, consume, revoke)
// write it in the same step, put gives it the record's TTL and consume
// slides it with the record's idle expiry, so it is gone when the record
// is. Each entry is "<Unix ms>|<outcome>|<note>", the outcome '' (done),
// 'u' (refused: used up) or 'r' (refused: revoked).

// entry is a history entry at t, with no refusal.
func entry(t time.Time, note string) string {
	return strconv.FormatInt(t.UnixMilli(), 10) + "||" + note
}

// parseEntry reads an entry; false for one that does not parse.
func parseEntry(s string) (store.Entry, bool) {
	at, rest, ok := strings.Cut(s, "|")
	if !ok {
		return store.Entry{}, false
	}
	outcome, note, ok := strings.Cut(rest, "|")
	ms, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil {
		return store.Entry{}, false
	}
	e := store.Entry{At: time.UnixMilli(ms), Note: note}
	switch outcome {
	case "":
	case "u":
		e.Refused = store.ErrUsed
	case "r":
		e.Refused = store.ErrRevoked
	default:
		return store.Entry{}, false
	}
	return e, true
}

// Annotate adds each note to its token's history at now: RPUSHX, so a
// token without a history (or a record) gets nothing, then LTRIM to the
// newest store.HistorySize, in one pipeline (a round trip per node). It
// does not wait for replicas: a history is an account, not a decision.
func (s *Store) Annotate(ctx context.Context, now time.Time, notes ...store.Note) error {
	if len(notes) == 0 {
		return nil
	}
	for _, n := range notes {
		if err := store.ValidateNote(n.Text); err != nil {
			return err
		}
	}
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, n := range notes {
			k := s.hist(n.ID)
			p.RPushX(ctx, k, entry(now, n.Text))
			p.LTrim(ctx, k, -store.HistorySize, -1)
		}
		return nil
	})
	if err != nil {
		return wrap("annotate", err)
	}
	return nil
}

// History returns the token's history, oldest first; none for a token
// without one.
func (s *Store) History(ctx context.Context, id store.ID) ([]store.Entry, error) {
	list, err := s.c.LRange(ctx, s.hist(id), 0, -1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap("history", err)
	}
	out := make([]store.Entry, 0, len(list))
	for _, l := range list {
		if e, ok := parseEntry(l); ok {
			out = append(out, e)
		}
	}
	return out, nil
}
