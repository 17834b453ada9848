package redisstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
)

// The scripts' prelude reads every envelope as the Go decoder does: its
// fast path (created_at in six bytes, a TTL in at most four) and the byte
// by byte reading of any other, for every combination of flags, and
// counters rewritten in place.
func TestRedisScriptParse(t *testing.T) {
	_, c, prefix := newRedis(t)
	ctx := context.Background()
	probe := redisstore.LuaParse + `
return {created, ttl, maxu, grace, idle, uses, exhausted, epoch, string.sub(v, pos, pos + klen - 1), string.sub(v, kpos, pos + klen - 1)}
`
	createds := []int64{0, 1, 127, 128, 1<<14 - 1, 1 << 21, 1<<35 - 1, 1 << 35, time.Now().UnixMilli(), 1<<42 - 1, 1 << 42, 1 << 49}
	ttls := []int64{1, 127, 128, 1<<14 - 1, 1 << 14, 1<<21 - 1, 1 << 21, 1<<28 - 1, 1 << 28, store.MaxTTL.Milliseconds(), 1 << 35}
	n := 0
	for _, created := range createds {
		for _, ttl := range ttls {
			for flags := range 64 {
				n++
				at := time.UnixMilli(created)
				rec := store.Record{
					Bundle:    []byte(`{"a":1}`),
					KeyID:     "partner-1",
					CreatedAt: at,
					ExpiresAt: at.Add(time.Duration(ttl) * time.Millisecond),
					KeyEpoch:  uint64(n % 300),
				}
				if flags&1 != 0 {
					rec.MaxUses, rec.Uses = uint32(1+n%200), uint32(n%200)
				}
				if flags&2 != 0 {
					rec.ReuseGrace = time.Duration(1+n%100000) * time.Millisecond
				}
				if flags&4 != 0 {
					rec.IdleTTL = time.Duration(1+n%(1<<30)) * time.Millisecond
				}
				if flags&8 != 0 {
					rec.Private = []byte(`{"p":2}`)
				}
				if flags&16 != 0 && created > 0 {
					rec.SessionStart = at.Add(-time.Duration(n) * time.Hour)
				}
				rec.History = flags&32 != 0
				if n%7 == 0 {
					rec.KeyID = strings.Repeat("k", 130+n%20) // a two-byte length
				}
				v := redisstore.EncodeRecord(rec)
				var exhausted int64
				if rec.MaxUses > 0 && n%3 == 0 {
					exhausted = int64(n) * 1000003 % (1 << 32)
					binary.BigEndian.PutUint32(v[11:], uint32(exhausted))
				}
				key := prefix + "parse"
				if err := c.Set(ctx, key, v, 0).Err(); err != nil {
					t.Fatal(err)
				}
				got, err := c.Eval(ctx, probe, []string{key}, 0, prefix+"e:").Slice()
				if err != nil {
					t.Fatalf("created %d ttl %d flags %d: %v", created, ttl, flags, err)
				}
				tail := string(binary.AppendUvarint(nil, uint64(len(rec.KeyID)))) + rec.KeyID
				want := []any{created, ttl, int64(rec.MaxUses), rec.ReuseGrace.Milliseconds(), rec.IdleTTL.Milliseconds(),
					int64(rec.Uses), exhausted, int64(rec.KeyEpoch), rec.KeyID, tail}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("created %d ttl %d flags %d:\n got %v\nwant %v", created, ttl, flags, got, want)
				}
			}
		}
	}
}
