package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Graceful shutdown under load: while 16 clients mint and verify tokens
// without pause, the run context is cancelled (what SIGTERM does in main).
// Every request the server accepted is answered 200, including one that
// was half sent when the shutdown began; run returns nil. Requests that
// were never accepted (the listener was closed, or an idle keep-alive
// connection was closed under them) fail at the connection level and are
// counted apart; the server's own access log, which has a line for every
// request it handled, must count exactly the 200s the clients received.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		redis bool
	}{{"embedded", false}, {"redis", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var in *instance
			if tc.redis {
				in = startOnRedis(t, startRedis(t, false).URL(), env{})
			} else {
				in = start(t, env{"TOKENSVC_API_KEYS": "k"})
			}
			shutdownUnderLoad(t, in)
		})
	}
}

// The same through the real signal: this test binary runs main as the
// tokensvc program (startProcess), its log on a file as in production,
// and gets SIGTERM under load. The access log, written in batches, has a
// line for every answer the clients received, and the last line is the
// clean stop.
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	in := startProcess(t, env{"TOKENSVC_API_KEYS": "k"})
	shutdownUnderLoad(t, in)
	lines := strings.Split(strings.TrimSpace(in.stdout.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, `"msg":"stopped"`) {
		t.Errorf("the last log line is %s, want the clean stop", last)
	}
}

// runMainEnv makes this test binary run main (see TestMain).
const runMainEnv = "TOKENSVC_TEST_RUN_MAIN"

// startProcess runs the program as a process of its own: this test
// binary, running main, with e as its environment (no other TOKENSVC_
// setting) and its standard output on a file. stop sends SIGTERM, waits
// for the exit and reads the file into stdout.
func startProcess(t *testing.T, e env) *instance {
	t.Helper()
	addr := freePort(t)
	logPath := filepath.Join(t.TempDir(), "stdout.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(os.Args[0], "serve")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKENSVC_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, runMainEnv+"=1", "TOKENSVC_ADDR="+addr)
	for k, v := range e {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	in := &instance{base: "http://" + addr, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	cmd.Stdout, cmd.Stderr = logFile, in.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	var runErr error
	in.stop = func() error {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case runErr = <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				runErr = fmt.Errorf("no exit within 30 s of SIGTERM: %v", <-exited)
			}
			b, err := os.ReadFile(logPath)
			if err != nil {
				t.Error(err)
			}
			_, _ = in.stdout.Write(b)
		})
		return runErr
	}
	t.Cleanup(func() { in.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(in.base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return in
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the program exited before serving: %v\n%s", err, in.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the program did not serve within 30 s: %v\n%s", err, in.stderr)
		}
	}
}

const (
	loadWorkers = 16
	// loadBefore is how many 200s the load reaches before the shutdown
	// (or loadMaxWait passes).
	loadBefore  = 400
	loadMaxWait = 5 * time.Second
)

// loadStats counts what the clients saw.
type loadStats struct {
	ok, refused, dropped atomic.Int64
	straddled            atomic.Int64 // 200s sent before the shutdown began and answered after
	shutdownAt           atomic.Int64 // UnixNano when the shutdown began; 0 before

	mu       sync.Mutex
	failures []string // answers other than 200, wrong bodies, errors before the shutdown, timeouts
}

func (s *loadStats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) < 20 {
		s.failures = append(s.failures, fmt.Sprintf(format, args...))
	}
}

// count records one call begun at sent; it reports a 200.
func (s *loadStats) count(what string, sent time.Time, r reply, err error) bool {
	shutdown := s.shutdownAt.Load()
	switch {
	case err == nil && r.status == http.StatusOK:
		s.ok.Add(1)
		if shutdown != 0 && sent.UnixNano() < shutdown {
			s.straddled.Add(1)
		}
		return true
	case err == nil:
		s.fail("%s: %d %s", what, r.status, r.body)
	case shutdown == 0:
		s.fail("%s before the shutdown: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		s.fail("%s: no answer within %s: %v", what, requestTimeout, err)
	case refused(err):
		s.refused.Add(1)
		time.Sleep(time.Millisecond) // the listener is gone: do not spin
	default:
		s.dropped.Add(1)
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func shutdownUnderLoad(t *testing.T, in *instance) {
	c := newLoadClient(t, in.base, "k")
	var st loadStats
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range loadWorkers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx := context.Background()
				bundle := fmt.Sprintf(`{"worker":%d,"i":%d}`, w, i)
				sent := time.Now()
				r, token, err := c.generate(ctx, bundle)
				if !st.count("generate", sent, r, err) {
					continue
				}
				sent = time.Now()
				r, err = c.verify(ctx, token)
				if st.count("verify", sent, r, err) && string(r.body) != bundle {
					st.fail("verify: bundle %s, want %s", r.body, bundle)
				}
			}
		})
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	// One request is accepted and half read when the shutdown begins.
	slow := beginSlowGenerate(t, in.base)

	deadline := time.Now().Add(loadMaxWait)
	for st.ok.Load() < loadBefore && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before := st.ok.Load()
	if before == 0 {
		t.Fatalf("no request succeeded before the shutdown: %q", st.failures)
	}

	st.shutdownAt.Store(time.Now().UnixNano())
	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- in.stop() }()
	awaitListenerClosed(t, in.base)
	slowReply, slowErr := slow()

	var runErr error
	select {
	case runErr = <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30 s of the cancel")
	}
	took := time.Since(began)
	close(stop)
	wg.Wait()

	if runErr != nil {
		t.Errorf("run returned %v after the cancel, want nil", runErr)
	}
	if slowErr != nil || slowReply.status != http.StatusOK {
		t.Errorf("the request in flight at the shutdown: %v %d %s, want 200", slowErr, slowReply.status, slowReply.body)
	}
	for _, f := range st.failures {
		t.Error(f)
	}
	logged200, loggedOther := accessLogCounts(t, in.stdout.String())
	// The slow generate is one 200 the load counters do not hold.
	if want := st.ok.Load() + 1; logged200 != want {
		t.Errorf("the server logged %d answers 200, the clients received %d: an accepted request lost its answer", logged200, want)
	}
	if loggedOther != 0 {
		t.Errorf("the server logged %d answers other than 200", loggedOther)
	}
	t.Logf("shutdown under load: %d answered 200 (%d before the cancel, %d sent before and answered after, plus the half-sent request), 0 failed; "+
		"not accepted: %d refused after the listener closed, %d dropped on idle keep-alive connections; run returned %v after %v",
		st.ok.Load(), before, st.straddled.Load(), st.refused.Load(), st.dropped.Load(), runErr, took.Round(time.Millisecond))
}

// beginSlowGenerate sends the headers of a /generate with
// "Expect: 100-continue" and waits for the server's 100 Continue, which
// the server sends once the handler reads the body: from then on the
// request is accepted and in flight. finish sends the body and reads the
// answer.
func beginSlowGenerate(t *testing.T, base string) (finish func() (reply, error)) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), requestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	body := `{"userId":"in-flight-at-shutdown"}`
	fmt.Fprintf(conn, "POST /generate HTTP/1.1\r\nHost: tokensvc\r\nx-api-key: k\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
	br := bufio.NewReader(conn)
	req, _ := http.NewRequest(http.MethodPost, base+"/generate", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue for the slow request, got %v %v", resp, err)
	}
	return func() (reply, error) {
		if _, err := conn.Write([]byte(body)); err != nil {
			return reply{}, err
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return reply{}, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return reply{status: resp.StatusCode, body: b}, err
	}
}

// awaitListenerClosed waits until connecting to base is refused.
func awaitListenerClosed(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second)
		if err != nil {
			return
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener was still open 10 s after the cancel")
		}
		time.Sleep(time.Millisecond)
	}
}

// accessLogCounts counts the access-log lines of /generate and /verify in
// the server's JSON log: answers 200 and other answers.
func accessLogCounts(t *testing.T, log string) (ok, other int64) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		var rec struct {
			Msg    string
			Route  string
			Status int
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "request" {
			continue
		}
		if rec.Route != "/generate" && rec.Route != "/verify" {
			continue
		}
		if rec.Status == http.StatusOK {
			ok++
		} else {
			other++
		}
	}
	return ok, other
}
