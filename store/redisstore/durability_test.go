package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// With Replicas set, every write waits for the replica: the contract holds,
// each acknowledged record is on the replica the moment the call returns,
// and without a replica writes are ErrUnavailable instead of silently
// unreplicated.
func TestRedisReplicaDurability(t *testing.T) {
	primary := storetest.StartServer(t, storetest.ServerOptions{})
	replica := storetest.StartServer(t, storetest.ServerOptions{ReplicaOf: primary.Addr()})
	pc := redis.NewClient(&redis.Options{Addr: primary.Addr()})
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	t.Cleanup(func() { pc.Close(); rc.Close() })
	ctx := context.Background()
	waitFor(t, func() bool {
		info, _ := pc.Info(ctx, "replication").Result()
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
	open := func(t *testing.T) server.Store {
		s, err := redisstore.New(pc, redisstore.Options{Prefix: "dur" + storetest.NewID(t).String()[:8] + ":", Replicas: 1, ReplicaTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("Contract", func(t *testing.T) { storetest.Run(t, open) })

	s := open(t).(*redisstore.Store)
	for i := 0; i < 20; i++ {
		id := storetest.NewID(t)
		if err := s.Put(ctx, id, storetest.NewRecord(`{}`, time.Hour), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutMarker(ctx, storetest.NewID(t), []byte("m"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// Read straight from the replica, with no waiting: it has them all.
	keys, err := rc.DBSize(ctx).Result()
	if err != nil || keys < 21 {
		t.Fatalf("the replica holds %d keys right after 21 acknowledged writes (%v)", keys, err)
	}

	replica.Stop()
	err = s.Put(ctx, storetest.NewID(t), storetest.NewRecord(`{}`, time.Hour), "")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Put without a replica: got %v, want ErrUnavailable", err)
	}
	err = s.PutMarker(ctx, storetest.NewID(t), []byte("m"), time.Hour)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("PutMarker without a replica: got %v, want ErrUnavailable", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
