package storetest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Real Redis topologies for reliability tests: one server, Sentinel, and
// Cluster, each as local redis-server processes (Debian's binary, 7.0) on
// free loopback ports, each in a t.TempDir of its own and stopped in
// t.Cleanup. Unlike a container, a process can be paused (SIGSTOP), killed
// with -9 and restarted on the same port and directory, which is what
// outage and durability tests need.

// Polling bounds. Start-up and failover are polled, never slept through.
const (
	pollEvery    = 20 * time.Millisecond
	startTimeout = 15 * time.Second
	stopTimeout  = 5 * time.Second
)

// redisServer returns the path of redis-server, or skips tb without one
// (fails it under CI: see NeedBinary).
func redisServer(tb testing.TB) string {
	tb.Helper()
	return NeedBinary(tb, "redis-server", "apt-get install redis-server")
}

// ServerOptions configure StartServer.
type ServerOptions struct {
	// AppendOnly turns on the append-only file with appendfsync always:
	// every write is in the AOF before Redis acknowledges it, and a
	// restarted server replays it.
	AppendOnly bool
	// ReplicaOf is the host:port of a primary this server replicates.
	ReplicaOf string
	// Args are further redis-server arguments, e.g. "--maxmemory", "64mb".
	Args []string
}

// Server is one redis-server process.
type Server struct {
	bin  string
	dir  string
	port int
	args []string // the whole command line after the binary, kept for Restart

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{} // closed when proc has exited
}

// StartServer starts one redis-server on a free loopback port and returns
// once it answers PING. It is stopped when tb ends.
func StartServer(tb testing.TB, opts ServerOptions) *Server {
	tb.Helper()
	return launch(tb, func(dir string, port int) []string {
		args := baseArgs(dir, port)
		if opts.AppendOnly {
			args = append(args, "--appendonly", "yes", "--appendfsync", "always")
		}
		if opts.ReplicaOf != "" {
			host, p, err := net.SplitHostPort(opts.ReplicaOf)
			if err != nil {
				host, p = opts.ReplicaOf, "6379"
			}
			args = append(args, "--replicaof", host, p)
		}
		return append(args, opts.Args...)
	})
}

// baseArgs is the command line every data node starts with: loopback only,
// no RDB snapshots (the AOF is opt-in), and replicas synced at once.
func baseArgs(dir string, port int) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
		"--save", "",
		"--appendonly", "no",
		"--repl-diskless-sync-delay", "0",
	}
}

// launch starts a server whose command line build makes for a directory and
// port. A port taken between choosing and binding it is retried with
// another.
func launch(tb testing.TB, build func(dir string, port int) []string) *Server {
	tb.Helper()
	bin := redisServer(tb)
	dir := tb.TempDir()
	s := &Server{bin: bin, dir: dir}
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(func() { s.stop(2 * time.Second) })
	var err error
	for range 3 {
		s.port = freePort(tb)
		s.args = build(dir, s.port)
		if err = s.start(); err == nil {
			return s
		}
		if !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	tb.Fatalf("start redis-server in %s: %v", dir, err)
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the process and waits until it answers PING (which a server
// still loading its AOF refuses with LOADING).
func (s *Server) start() error {
	console, err := os.OpenFile(filepath.Join(s.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer console.Close()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = console, console
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(s.Addr())
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.stop(time.Second)
			return fmt.Errorf("no PONG within %s: %v; log: %s", startTimeout, err, s.logTail())
		}
		time.Sleep(pollEvery)
	}
}

// ping sends PING over a fresh connection and wants +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return errors.New(line)
	}
	return nil
}

// logTail is the end of the server's logs, for failure messages.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"console.log", "redis.log"} {
		data, _ := os.ReadFile(filepath.Join(s.dir, name))
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		b.Write(data)
	}
	return b.String()
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the tokensvc TOKENSVC_REDIS_URL of this one server, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir is the server's working directory (its AOF and logs).
func (s *Server) Dir() string { return s.dir }

// Kill kills the server with SIGKILL, as a crash would, and waits until it
// is gone. Nothing is flushed: only what is already in the AOF survives.
func (s *Server) Kill() {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Signal(syscall.SIGKILL)
	<-exited
}

// Stop stops the server with SIGTERM (after SIGCONT if paused), and kills
// it if it has not exited within a few seconds.
func (s *Server) Stop() { s.stop(stopTimeout) }

func (s *Server) stop(grace time.Duration) {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Signal(syscall.SIGCONT)
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = proc.Signal(syscall.SIGKILL)
		<-exited
	}
}

// Restart starts the server again on the same port, in the same directory
// and with the same arguments, so an AOF is replayed; it stops the running
// process first, if any. It returns once the server answers PING, that is
// once the AOF is loaded.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		tb.Fatalf("restart redis-server on %s: %v", s.Addr(), err)
	}
}

// Pause stops the process with SIGSTOP: connections stay open and new
// ones are accepted by the kernel, but nothing is answered, as with a
// hung server or a network partition.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	proc := s.proc
	s.mu.Unlock()
	if proc != nil {
		_ = proc.Signal(sig)
	}
}

// Running reports whether the process is alive (paused or not).
func (s *Server) Running() bool {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}
