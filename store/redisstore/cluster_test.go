package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// The store on Redis Cluster and Sentinel, started as local processes by
// storetest (Debian's redis-server), not as containers: Sentinel and
// Cluster announce the addresses their clients must reach, and a failover
// needs a primary that can be killed.

func clusterClient(t *testing.T, cl *storetest.Cluster) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { c.Close() })
	return c
}

func sentinelClient(t *testing.T, sn *storetest.Sentinel) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sn.MasterName(), SentinelAddrs: sn.SentinelAddrs()})
	t.Cleanup(func() { c.Close() })
	return c
}

// newStoreOn returns a store on c with a prefix of its own.
func newStoreOn(t *testing.T, c redis.UniversalClient) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(c, redisstore.Options{Prefix: fmt.Sprintf("test%d:", prefixes.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The whole contract holds on a 3-master Cluster.
func TestClusterContract(t *testing.T) {
	t.Parallel()
	c := clusterClient(t, storetest.StartCluster(t, 3))
	storetest.Run(t, func(t *testing.T) server.Store { return newStoreOn(t, c) })
}

// Records are spread over every master: the contract above really ran
// against several shards, not against one node that holds all slots.
func TestClusterSpreadsRecords(t *testing.T) {
	t.Parallel()
	c := clusterClient(t, storetest.StartCluster(t, 3))
	s := newStoreOn(t, c)
	ctx := context.Background()
	for range 64 {
		if err := s.Put(ctx, storetest.NewID(t), storetest.NewRecord(`{}`, time.Minute), ""); err != nil {
			t.Fatal(err)
		}
	}
	var masters atomic.Int32
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n, err := node.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("master " + node.Options().Addr + " holds no record")
		}
		masters.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if masters.Load() != 3 {
		t.Fatalf("records on %d masters, want 3", masters.Load())
	}
}

// The whole contract holds through Sentinel (writes go to the primary).
func TestSentinelContract(t *testing.T) {
	t.Parallel()
	c := sentinelClient(t, storetest.StartSentinel(t))
	storetest.Run(t, func(t *testing.T) server.Store { return newStoreOn(t, c) })
}

// When the primary dies, the sentinels promote the replica and the store
// follows it with no new client: records replicated before the crash are
// still there, and writes work again.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	sn := storetest.StartSentinel(t)
	c := sentinelClient(t, sn)
	s := newStoreOn(t, c)
	ctx := context.Background()

	ids := make([]store.ID, 20)
	for i := range ids {
		ids[i] = storetest.NewID(t)
		if err := s.Put(ctx, ids[i], storetest.NewRecord(`{"i":1}`, time.Hour), ""); err != nil {
			t.Fatal(err)
		}
	}
	// Replication is asynchronous: make sure the replica has them before
	// the crash, as TOKENSVC_DURABILITY=replica:1 is to do for each write.
	if n, err := c.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n < 1 {
		t.Fatalf("WAIT 1: %d replicas, %v", n, err)
	}

	old := sn.MasterAddr(t)
	killed := time.Now()
	sn.Primary().Kill()
	next := sn.WaitForFailover(t, old, 30*time.Second)
	promoted := time.Since(killed)

	// The client learns the new primary by itself: poll a write until it
	// goes through.
	deadline := time.Now().Add(15 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.Put(pctx, storetest.NewID(t), storetest.NewRecord(`{}`, time.Minute), "")
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Put during the failover: %v, want nil or ErrUnavailable", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not follow the new primary %s: %v", next.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("failover: sentinels agreed on %s %v after the kill; the store wrote again after %v",
		next.Addr(), promoted.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	for _, id := range ids {
		if _, err := s.Get(ctx, id); err != nil {
			t.Errorf("record replicated before the crash: %v", err)
		}
	}
}

// A batch over a Cluster where one master lost its scripts (restart,
// failover, SCRIPT FLUSH) counts each use once: only the commands refused
// with NOSCRIPT are sent again.
func TestClusterConsumeManyAfterPartialScriptFlush(t *testing.T) {
	cl := storetest.StartCluster(t, 3)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { c.Close() })
	s, err := redisstore.New(c, redisstore.Options{Prefix: "flush:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ids := make([]store.ID, 30)
	for i := range ids {
		rec := storetest.NewRecord(`{}`, time.Hour)
		rec.MaxUses = 1
		ids[i] = storetest.NewID(t)
		if err := s.Put(ctx, ids[i], rec, ""); err != nil {
			t.Fatal(err)
		}
	}
	s.ConsumeMany(ctx, []store.ID{storetest.NewID(t)}, time.Now(), "") // scripts cached everywhere it ran
	c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.ScriptLoad(ctx, "return 1").Err() })
	if err := redis.NewClient(&redis.Options{Addr: cl.Addrs()[0]}).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i, r := range s.ConsumeMany(ctx, ids, time.Now(), "") {
		if r.Err != nil {
			t.Errorf("token %d: %v on its first use", i, r.Err)
		}
	}
}
