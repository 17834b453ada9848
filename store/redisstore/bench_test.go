package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// Benchmarks of the Redis store's hot paths, each one call (one round trip)
// at a time against the package's test Redis (TestMain's container), plus
// the same calls from many goroutines at once. Through Docker's port
// forwarding a round trip costs more than on plain loopback: compare
// these figures with each other, and tokenbench's for the service.
//
//	go test -run '^$' -bench . -benchmem ./store/redisstore/
//
// The single-call benchmarks also report redis-µs/call: the time Redis
// spent in each script call (INFO commandstats, EVALSHA's usec_per_call,
// its nested commands included), the figure that sizes a Redis for a
// load, which round trips hide.

// benchSealed is the size of a sealed 150-byte bundle (AES-GCM adds a
// 16-byte tag).
const benchSealed = 166

// newBenchRedis is newRedis for benchmarks: a store with a prefix of its
// own on a client of its own.
func newBenchRedis(b *testing.B) (*redisstore.Store, redis.UniversalClient) {
	b.Helper()
	opts, err := redis.ParseURL(storetest.NeedRedis(b, redisURL))
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(opts)
	b.Cleanup(func() { c.Close() })
	prefix := fmt.Sprintf("bench%d:", prefixes.Add(1))
	s, err := redisstore.New(c, redisstore.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Unlink(ctx, iter.Val())
		}
	})
	return s, c
}

// redisTime resets Redis's command statistics, for reportRedisTime after
// the loop.
func redisTime(b *testing.B, c redis.UniversalClient) {
	b.Helper()
	if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
}

// reportRedisTime reports the mean time Redis spent in each EVALSHA since
// redisTime, as redis-µs/call.
func reportRedisTime(b *testing.B, c redis.UniversalClient) {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		stats, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for field := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(field, "usec_per_call="); ok {
				us, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(us, "redis-µs/call")
				return
			}
		}
	}
	b.Fatal("no EVALSHA in INFO commandstats")
}

func benchRecord(b *testing.B) store.Record {
	b.Helper()
	sealed := make([]byte, benchSealed)
	if _, err := rand.Read(sealed); err != nil {
		b.Fatal(err)
	}
	rec := storetest.NewRecord("", time.Hour)
	rec.Bundle = sealed
	return rec
}

// benchPut stores n records and returns their IDs; with history, records
// that keep one.
func benchPut(b *testing.B, s *redisstore.Store, n int, history bool) []store.ID {
	b.Helper()
	ids := make([]store.ID, n)
	rec := benchRecord(b)
	rec.History = history
	for i := range ids {
		ids[i] = storetest.NewID(b)
		if err := s.Put(context.Background(), ids[i], rec, ""); err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

func BenchmarkRedisPut(b *testing.B)        { benchmarkRedisPut(b, false) }
func BenchmarkRedisPutHistory(b *testing.B) { benchmarkRedisPut(b, true) }

func benchmarkRedisPut(b *testing.B, history bool) {
	s, c := newBenchRedis(b)
	rec := benchRecord(b)
	rec.History = history
	ctx := context.Background()
	// Fresh IDs from a counter under a random stem: crypto/rand is not
	// what is measured.
	id := storetest.NewID(b)
	var n uint64
	b.ReportAllocs()
	redisTime(b, c)
	for b.Loop() {
		n++
		binary.BigEndian.PutUint64(id[8:], n)
		if err := s.Put(ctx, id, rec, "mint"); err != nil {
			b.Fatal(err)
		}
	}
	reportRedisTime(b, c)
}

func BenchmarkRedisConsume(b *testing.B)        { benchmarkRedisConsume(b, false) }
func BenchmarkRedisConsumeHistory(b *testing.B) { benchmarkRedisConsume(b, true) }

func benchmarkRedisConsume(b *testing.B, history bool) {
	benchmarkRedisReads(b, history, func(s *redisstore.Store, id store.ID) error {
		_, err := s.Consume(context.Background(), id, time.Now(), "verify")
		return err
	})
}

func BenchmarkRedisGet(b *testing.B) {
	benchmarkRedisReads(b, false, func(s *redisstore.Store, id store.ID) error {
		_, err := s.Get(context.Background(), id)
		return err
	})
}

// benchmarkRedisReads runs op over 1,000 stored records in turn, one call
// at a time, and reports Redis's own time per call too.
func benchmarkRedisReads(b *testing.B, history bool, op func(*redisstore.Store, store.ID) error) {
	s, c := newBenchRedis(b)
	ids := benchPut(b, s, 1000, history)
	b.ReportAllocs()
	redisTime(b, c)
	i := 0
	for b.Loop() {
		if err := op(s, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportRedisTime(b, c)
}

func BenchmarkRedisConsumeMany100(b *testing.B) {
	s, _ := newBenchRedis(b)
	ids := benchPut(b, s, 100, false)
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for _, r := range s.ConsumeMany(ctx, ids, time.Now(), "") {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(100*n), "ns/token")
}

// BenchmarkRedisConsumeParallel is Consume from 8 goroutines per CPU, as
// under HTTP load: what the connection pool makes of concurrent calls.
func BenchmarkRedisConsumeParallel(b *testing.B) {
	s, _ := newBenchRedis(b)
	ids := benchPut(b, s, 1000, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Consume(ctx, ids[i%len(ids)], time.Now(), ""); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
