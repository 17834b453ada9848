package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Durability of acknowledged tokens across a Redis crash. Under continuous
// /generate load, Redis is killed with -9 and restarted on the same port
// and directory; then every token that was answered 200 must verify.
//
// With appendonly yes + appendfsync always (what the README advises),
// Redis writes each command to its AOF before it replies, so nothing
// acknowledged is lost: lost must be 0. The control runs the same load on
// a Redis without persistence and must lose tokens, which shows the check
// can see a loss. (kill -9 loses what the process had not written; power
// loss would also test the fsync, which a test here cannot do.)
func TestDurabilityKill9UnderLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		aof  bool
	}{{"aof-always", true}, {"control-no-persistence", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rs := startRedis(t, tc.aof)
			in := startOnRedis(t, rs.URL(), env{"TOKENSVC_STORE_TIMEOUT": outageStoreTimeout})
			res := killUnderLoad(t, newLoadClient(t, in.base, "k"), rs.Kill, func() { rs.Restart(t) })
			t.Logf("%s: acknowledged %d (%d before the kill), lost %d; %d answers 503 store_unavailable while Redis was down (%v by design); "+
				"the restarted Redis answered PING %v after its start, and tokensvc minted again %v after that",
				tc.name, res.acked, res.ackedBeforeKill, res.lost, res.unavailable, crashDowntime,
				res.restart.Round(time.Millisecond), res.serviceBack.Round(time.Millisecond))
			switch {
			case tc.aof && res.lost != 0:
				t.Errorf("%d of %d acknowledged tokens were lost with appendfsync always", res.lost, res.acked)
			case !tc.aof && res.lost == 0:
				t.Errorf("the control lost no token: the test cannot tell a loss")
			}
		})
	}
}

const (
	durabilityWorkers = 8
	ackBeforeKill     = 300 // tokens acknowledged before the kill
	ackAfterRestart   = 200 // and after the restart
	// crashDowntime is how long Redis stays dead: longer than the store
	// timeout, so the load also meets 503s and not only client retries.
	crashDowntime = time.Second
)

type killResult struct {
	acked, ackedBeforeKill, lost, unavailable int64
	restart                                   time.Duration // from restarting Redis to its PONG (AOF loaded)
	serviceBack                               time.Duration // from that PONG to tokensvc's first 200 to a request sent after the kill
}

// killUnderLoad mints tokens from several clients, kills Redis once
// ackBeforeKill are acknowledged, restarts it crashDowntime later, goes on until
// ackAfterRestart more are, then verifies every acknowledged token.
func killUnderLoad(t *testing.T, c *loadClient, kill, restart func()) killResult {
	t.Helper()
	var (
		mu          sync.Mutex
		acked       = map[string]string{} // token → bundle
		nAcked      atomic.Int64
		unavailable atomic.Int64
		dead        atomic.Int64 // UnixNano when the killed process was gone
		firstAfter  atomic.Int64 // UnixNano of the first 200 to a request sent after that
		failures    = make(chan string, 16)
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range durabilityWorkers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				bundle := fmt.Sprintf(`{"worker":%d,"i":%d}`, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
				sent := time.Now().UnixNano()
				r, token, err := c.generate(ctx, bundle)
				cancel()
				switch {
				case err == nil && r.status == http.StatusOK:
					mu.Lock()
					acked[token] = bundle
					mu.Unlock()
					nAcked.Add(1)
					if d := dead.Load(); d != 0 && sent > d {
						firstAfter.CompareAndSwap(0, time.Now().UnixNano())
					}
				case err == nil && r.status == http.StatusServiceUnavailable && r.code == "store_unavailable":
					unavailable.Add(1)
					time.Sleep(5 * time.Millisecond)
				default:
					select {
					case failures <- fmt.Sprintf("generate: %v %d %s", err, r.status, r.body):
					default:
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopLoad)

	waitCount(t, &nAcked, ackBeforeKill, 20*time.Second, "acknowledged tokens before the kill")
	var res killResult
	res.ackedBeforeKill = nAcked.Load()
	kill()
	dead.Store(time.Now().UnixNano())
	time.Sleep(crashDowntime)
	restarting := time.Now()
	restart() // returns once Redis answers PING, its AOF replayed
	up := time.Now()
	res.restart = up.Sub(restarting)
	waitCount(t, &nAcked, nAcked.Load()+ackAfterRestart, 20*time.Second, "acknowledged tokens after the restart")
	stopLoad()
	res.serviceBack = max(0, time.Duration(firstAfter.Load()-up.UnixNano()))
	close(failures)
	for f := range failures {
		t.Errorf("an answer other than 200 or 503 store_unavailable: %s", f)
	}

	// Verify every acknowledged token, from several clients. A 503 is the
	// store saying it cannot serve yet (a use under TOKENSVC_DURABILITY
	// waits for a replica, which a loaded machine may keep behind the
	// store timeout): asked again, not counted as lost.
	tokens := make(chan string)
	var lost atomic.Int64
	var vwg sync.WaitGroup
	for range durabilityWorkers {
		vwg.Go(func() {
			for token := range tokens {
				var r reply
				var err error
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
					r, _, err = timed(func(ctx context.Context) (reply, error) { return c.verify(ctx, token) })
					if err != nil || r.status != http.StatusServiceUnavailable || r.code != "store_unavailable" || time.Now().After(deadline) {
						break
					}
				}
				switch {
				case err == nil && r.status == http.StatusOK && string(r.body) == acked[token]:
				case err == nil && r.status == http.StatusForbidden && r.code == "invalid_token":
					lost.Add(1)
				default:
					t.Errorf("verify of an acknowledged token: %v %d %s", err, r.status, r.body)
				}
			}
		})
	}
	for token := range acked {
		tokens <- token
	}
	close(tokens)
	vwg.Wait()
	res.acked, res.lost, res.unavailable = int64(len(acked)), lost.Load(), unavailable.Load()
	return res
}

// waitCount waits until n reaches want, failing t after timeout.
func waitCount(t *testing.T, n *atomic.Int64, want int64, timeout time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d %s within %s", n.Load(), want, what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
