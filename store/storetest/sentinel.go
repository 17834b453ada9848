package storetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel timings: a primary that does not answer for a second is down,
// and a failover is retried after a few seconds, so a test sees a new
// primary within seconds rather than Redis's default minutes.
const (
	sentinelMaster     = "mymaster"
	sentinelQuorum     = 2
	downAfter          = 1000 * time.Millisecond
	failoverTimeout    = 3000 * time.Millisecond
	sentinelReadyAfter = 30 * time.Second
)

// Sentinel is a primary, its replicas and three sentinels on loopback.
type Sentinel struct {
	primary   *Server
	replicas  []*Server
	sentinels []*Server
}

// StartSentinel starts a primary, a replica of it, and three sentinels
// (quorum 2) that monitor it, and returns once the replica is in sync and
// every sentinel knows the replica and the other two sentinels, so a
// failover can start as soon as the primary fails.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	return StartSentinelReplicas(tb, 1)
}

// StartSentinelReplicas is StartSentinel with n replicas. With two, one
// is left to replicate the promoted one after a failover, so writes that
// wait for a replica (TOKENSVC_DURABILITY=replica:1) go on.
func StartSentinelReplicas(tb testing.TB, n int) *Sentinel {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("StartSentinelReplicas: %d replicas", n)
	}
	s := &Sentinel{primary: StartServer(tb, ServerOptions{})}
	for range n {
		s.replicas = append(s.replicas, StartServer(tb, ServerOptions{ReplicaOf: s.primary.Addr()}))
	}
	want := strconv.Itoa(n)
	// The sentinels learn the replicas from the primary's INFO, which they
	// read at once and then every ten seconds: start them once the
	// replicas are attached, so they know them from the first INFO.
	waitFor(tb, sentinelReadyAfter, "the replicas to sync", func(ctx context.Context) error {
		for _, r := range s.replicas {
			info, err := infoOf(ctx, r.Addr(), "replication")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("replica %s: %s", r.Addr(), field(info, "master_link_status"))
			}
		}
		info, err := infoOf(ctx, s.primary.Addr(), "replication")
		if err != nil {
			return err
		}
		if field(info, "connected_slaves") != want {
			return fmt.Errorf("primary has %s replicas", field(info, "connected_slaves"))
		}
		return nil
	})
	primary := s.primary
	for range 3 {
		s.sentinels = append(s.sentinels, launch(tb, func(dir string, port int) []string {
			conf := filepath.Join(dir, "sentinel.conf")
			text := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
daemonize no
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d %d
sentinel down-after-milliseconds %[4]s %[7]d
sentinel failover-timeout %[4]s %[8]d
sentinel parallel-syncs %[4]s 1
`, port, dir, filepath.Join(dir, "redis.log"), sentinelMaster, primary.port, sentinelQuorum,
				downAfter.Milliseconds(), failoverTimeout.Milliseconds())
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				tb.Fatal(err)
			}
			// Sentinel rewrites its configuration file: it must be its own.
			return []string{conf, "--sentinel"}
		}))
	}
	waitFor(tb, sentinelReadyAfter, "the sentinels to know the replica and each other", func(ctx context.Context) error {
		for _, sn := range s.sentinels {
			m, err := sentinelMasterInfo(ctx, sn.Addr())
			if err != nil {
				return err
			}
			if m["num-slaves"] != want || m["num-other-sentinels"] != "2" || m["flags"] != "master" {
				return fmt.Errorf("sentinel %s: flags %s, %s replicas, %s other sentinels",
					sn.Addr(), m["flags"], m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
	return s
}

// MasterName is the name the sentinels monitor the primary under.
func (s *Sentinel) MasterName() string { return sentinelMaster }

// SentinelAddrs are the host:port of the three sentinels.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		addrs[i] = sn.Addr()
	}
	return addrs
}

// Sentinels are the three sentinel processes.
func (s *Sentinel) Sentinels() []*Server { return s.sentinels }

// Primary is the server started as the primary (it stays so until a
// failover).
func (s *Sentinel) Primary() *Server { return s.primary }

// Replica is the (first) server started as a replica.
func (s *Sentinel) Replica() *Server { return s.replicas[0] }

// Replicas are the servers started as replicas.
func (s *Sentinel) Replicas() []*Server { return s.replicas }

// URL is the TOKENSVC_REDIS_URL of this Sentinel deployment, in
// go-redis's dialect (redis.ParseFailoverURL): the sentinels are the host
// and every addr=, master_name the monitored primary.
func (s *Sentinel) URL() string {
	addrs := s.SentinelAddrs()
	u := "redis://" + addrs[0] + "/0?"
	for _, a := range addrs[1:] {
		u += "addr=" + a + "&"
	}
	return u + "master_name=" + sentinelMaster
}

// MasterAddr is the primary's address as the sentinels name it; it fails
// tb unless a majority of them agrees.
func (s *Sentinel) MasterAddr(tb testing.TB) string {
	tb.Helper()
	var addr string
	waitFor(tb, 10*time.Second, "a majority of sentinels to name the primary", func(ctx context.Context) error {
		a, n, err := s.agreedMaster(ctx)
		if err != nil {
			return err
		}
		if n < sentinelQuorum {
			return fmt.Errorf("only %d sentinels name %s", n, a)
		}
		addr = a
		return nil
	})
	return addr
}

// agreedMaster returns the address most sentinels name, and how many do.
func (s *Sentinel) agreedMaster(ctx context.Context) (string, int, error) {
	votes := map[string]int{}
	var lastErr error
	for _, sn := range s.sentinels {
		c := redis.NewSentinelClient(adminOptions(sn.Addr()))
		hp, err := c.GetMasterAddrByName(ctx, sentinelMaster).Result()
		c.Close()
		if err != nil || len(hp) != 2 {
			lastErr = fmt.Errorf("sentinel %s: %v %v", sn.Addr(), hp, err)
			continue
		}
		votes[net.JoinHostPort(hp[0], hp[1])]++
	}
	best, n := "", 0
	for a, v := range votes {
		if v > n {
			best, n = a, v
		}
	}
	if n == 0 {
		return "", 0, lastErr
	}
	return best, n, nil
}

// WaitForFailover waits, up to timeout, until all three sentinels name a
// primary other than from and that server says it is a master, and
// returns it (a server that was a replica).
func (s *Sentinel) WaitForFailover(tb testing.TB, from string, timeout time.Duration) *Server {
	tb.Helper()
	var next *Server
	waitFor(tb, timeout, "the sentinels to agree on a new primary", func(ctx context.Context) error {
		a, n, err := s.agreedMaster(ctx)
		switch {
		case err != nil:
			return err
		case a == from || n < len(s.sentinels):
			return fmt.Errorf("%d sentinels name %s", n, a)
		}
		info, err := infoOf(ctx, a, "replication")
		if err != nil {
			return err
		}
		if role := field(info, "role"); role != "master" {
			return fmt.Errorf("%s is still a %s", a, role)
		}
		for _, srv := range append([]*Server{s.primary}, s.replicas...) {
			if srv.Addr() == a {
				next = srv
				return nil
			}
		}
		return fmt.Errorf("the sentinels name %s, which this topology did not start", a)
	})
	return next
}

func sentinelMasterInfo(ctx context.Context, addr string) (map[string]string, error) {
	c := redis.NewSentinelClient(adminOptions(addr))
	defer c.Close()
	return c.Master(ctx, sentinelMaster).Result()
}

// adminOptions are for the helpers' own short-lived connections: RESP2,
// no retries, short timeouts, so a poll never hangs on a dead node.
func adminOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: time.Second,
	}
}

// infoOf returns INFO section of the server at addr.
func infoOf(ctx context.Context, addr, section string) (string, error) {
	c := redis.NewClient(adminOptions(addr))
	defer c.Close()
	return c.Info(ctx, section).Result()
}

// field returns the value of name in an INFO text.
func field(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// waitFor polls check until it returns nil, and fails tb with check's
// last error once timeout has passed.
func waitFor(tb testing.TB, timeout time.Duration, what string, check func(context.Context) error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waited %s for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
