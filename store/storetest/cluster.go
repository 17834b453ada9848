package storetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// Cluster is a Redis Cluster of masters only, on loopback.
type Cluster struct {
	nodes []*Server
	bus   []int
}

// StartCluster starts masters cluster-enabled nodes, gives each an equal
// range of the hash slots, joins them, and returns once every node reports
// cluster_state:ok and knows all the others.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	if masters < 1 {
		tb.Fatalf("StartCluster: %d masters", masters)
	}
	c := &Cluster{}
	for range masters {
		// The cluster bus port is chosen like the client port, rather than
		// left at port+10000, which may be taken.
		var bus int
		n := launch(tb, func(dir string, port int) []string {
			bus = freePort(tb)
			return append(baseArgs(dir, port),
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000",
				"--cluster-port", strconv.Itoa(bus),
			)
		})
		c.nodes = append(c.nodes, n)
		c.bus = append(c.bus, bus)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, n := range c.nodes {
		a := redis.NewClient(adminOptions(n.Addr()))
		lo, hi := i*clusterSlots/masters, (i+1)*clusterSlots/masters-1
		err := a.ClusterAddSlotsRange(ctx, lo, hi).Err()
		if err == nil {
			// Distinct epochs spare the nodes resolving a collision.
			err = a.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err()
		}
		if err == nil && i > 0 {
			err = a.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", c.nodes[0].port, c.bus[0]).Err()
		}
		a.Close()
		if err != nil {
			tb.Fatalf("cluster node %s: %v", n.Addr(), err)
		}
	}
	waitFor(tb, 30*time.Second, "cluster_state:ok on every node", func(ctx context.Context) error {
		for _, n := range c.nodes {
			a := redis.NewClient(adminOptions(n.Addr()))
			info, err := a.ClusterInfo(ctx).Result()
			a.Close()
			if err != nil {
				return err
			}
			if field(info, "cluster_state") != "ok" ||
				field(info, "cluster_known_nodes") != strconv.Itoa(masters) ||
				field(info, "cluster_slots_ok") != strconv.Itoa(clusterSlots) {
				return fmt.Errorf("node %s: state %s, %s nodes known, %s slots ok", n.Addr(),
					field(info, "cluster_state"), field(info, "cluster_known_nodes"), field(info, "cluster_slots_ok"))
			}
		}
		return nil
	})
	return c
}

// Addrs are the host:port of the nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes are the node processes.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// URL is the TOKENSVC_REDIS_URL of this Cluster, in go-redis's dialect
// (redis.ParseClusterURL): the host and every addr= are seed nodes, and
// two or more addresses make a Cluster client (as in
// redis.NewUniversalClient), so a one-node Cluster names its node twice.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	if len(addrs) == 1 {
		addrs = append(addrs, addrs[0])
	}
	return "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
}
