package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/migrations"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// Apply and Check on a real 3-master Redis Cluster (local processes
// started by storetest): the layout key lives on one shard, per-master
// steps run on every master, and several deployers may race.
func TestClusterApplyThenCheck(t *testing.T) {
	t.Parallel()
	cl := storetest.StartCluster(t, 3)
	ctx := context.Background()
	newClient := func() *redis.ClusterClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := newClient()

	t.Run("Once", func(t *testing.T) {
		prefix := fmt.Sprintf("migc%d:", n.Add(1))
		if err := migrations.Check(ctx, c, prefix); !errors.Is(err, migrations.ErrOutdated) {
			t.Fatalf("Check before Apply = %v, want ErrOutdated", err)
		}
		res, err := migrations.Apply(ctx, c, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if res.From != 0 || res.To != migrations.Layout {
			t.Fatalf("Apply = %+v", res)
		}
		if err := migrations.Check(ctx, c, prefix); err != nil {
			t.Fatalf("Check after Apply: %v", err)
		}
		// A client that starts from another seed node sees the same layout.
		other := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()[2:]})
		defer other.Close()
		if err := migrations.Check(ctx, other, prefix); err != nil {
			t.Fatalf("Check from another seed: %v", err)
		}
		if res, err := migrations.Apply(ctx, c, prefix); err != nil || len(res.Applied) != 0 {
			t.Fatalf("second Apply = %+v, %v; want a no-op", res, err)
		}
	})

	// Deployers racing: each goroutine has its own client, as separate
	// `tokensvc migrate` processes would.
	t.Run("Concurrent", func(t *testing.T) {
		prefix := fmt.Sprintf("migc%d:", n.Add(1))
		clients := make([]*redis.ClusterClient, 8)
		for i := range clients {
			clients[i] = newClient()
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(clients)*2)
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 2 {
					if _, err := migrations.Apply(ctx, c, prefix); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, c := range clients {
			if err := migrations.Check(ctx, c, prefix); err != nil {
				t.Errorf("Check after concurrent Apply: %v", err)
			}
		}
		if v, err := migrations.Version(ctx, c, prefix); err != nil || v != migrations.Layout {
			t.Fatalf("Version = %d, %v", v, err)
		}
	})
}
