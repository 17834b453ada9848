package migrations_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/migrations"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// plantOldLimits writes n rate limits where layout 1 kept them,
// rate:<prefix>rl:<what>, and returns their names.
func plantOldLimits(t *testing.T, c redis.UniversalClient, prefix string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	for i := range n {
		keys = append(keys, fmt.Sprintf("rate:%srl:fail:192.0.2.%d", prefix, i))
	}
	// One SET per key, so a Cluster client sends each to its own slot.
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Set(ctx, k, "1800000000.5", time.Hour)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// countExisting counts which of keys exist.
func countExisting(t *testing.T, c redis.UniversalClient, keys []string) int {
	t.Helper()
	n := 0
	for _, k := range keys {
		e, err := c.Exists(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += int(e)
	}
	return n
}

// The step deletes every old rate limit of the prefix (more than one SCAN
// batch of them), and nothing else: not another deployment's, not one
// whose prefix the first's would match as a glob, not the new ones.
func TestApplyDeletesOldRateLimits(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	prefix := fmt.Sprintf("mig[%d]*:", n.Add(1)) // glob characters, on purpose
	near := strings.NewReplacer("[", "", "]", "", "*", "X").Replace(prefix)
	old := plantOldLimits(t, c, prefix, 2500)
	kept := append(plantOldLimits(t, c, near, 3), plantOldLimits(t, c, fmt.Sprintf("other%d:", n.Add(1)), 3)...)
	ctx := context.Background()
	fresh := prefix + "rl:gen:partner-1"
	kept = append(kept, fresh, "rate:"+prefix+"unrelated")
	c.Set(ctx, fresh, "1", time.Hour)
	c.Set(ctx, "rate:"+prefix+"unrelated", "1", time.Hour)

	res, err := migrations.Apply(ctx, c, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if res.To != migrations.Layout || !strings.Contains(strings.Join(res.Applied, "\n"), "rate:<prefix>rl:*") {
		t.Fatalf("Apply = %+v", res)
	}
	if left := countExisting(t, c, old); left != 0 {
		t.Fatalf("%d of %d old rate limits left", left, len(old))
	}
	if got := countExisting(t, c, kept); got != len(kept) {
		t.Fatalf("%d of %d other keys kept", got, len(kept))
	}
}

// The same on every master of a 3-master Cluster.
func TestClusterApplyDeletesOldRateLimits(t *testing.T) {
	t.Parallel()
	cl := storetest.StartCluster(t, 3)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { c.Close() })
	prefix := fmt.Sprintf("migc%d:", n.Add(1))
	old := plantOldLimits(t, c, prefix, 300)
	ctx := context.Background()
	var masters atomic.Int32 // ForEachMaster calls fn on every master at once
	c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if n, _ := node.DBSize(ctx).Result(); n > 0 {
			masters.Add(1)
		}
		return nil
	})
	if masters.Load() < 2 {
		t.Fatalf("the old keys sit on %d masters; the test needs several", masters.Load())
	}
	if _, err := migrations.Apply(ctx, c, prefix); err != nil {
		t.Fatal(err)
	}
	if left := countExisting(t, c, old); left != 0 {
		t.Fatalf("%d of %d old rate limits left", left, len(old))
	}
}

// A Redis user limited to the prefix cannot delete old keys outside it:
// migrate says so, and what to do, instead of failing obscurely.
func TestApplyOldRateLimitsOutsideTheACL(t *testing.T) {
	t.Parallel()
	admin, prefix := client(t)
	ctx := context.Background()
	user := strings.TrimSuffix(prefix, ":")
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">pw-"+user, "~"+prefix+"*", "+@all", "-@dangerous", "+info").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	opts.Username, opts.Password = user, "pw-"+user
	limited := redis.NewClient(opts)
	t.Cleanup(func() { limited.Close() })

	// Without old keys, the limited user migrates.
	if _, err := migrations.Apply(ctx, limited, prefix); err != nil {
		t.Fatalf("Apply as a user limited to the prefix: %v", err)
	}
	admin.Del(ctx, prefix+"layout")
	plantOldLimits(t, admin, prefix, 1)
	_, err = migrations.Apply(ctx, limited, prefix)
	if err == nil || !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(err.Error(), "rate:"+prefix+"rl:*") {
		t.Fatalf("Apply = %v, want NOPERM naming the old keys", err)
	}
}
