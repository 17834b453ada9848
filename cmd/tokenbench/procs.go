package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a long-running child process (redis-server, tokensvc).
type server struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
}

// servers are the children tokenbench must stop, by PID, whatever happens.
type servers struct {
	mu   sync.Mutex
	list []*server
}

// start starts cmd as a detached server and remembers it for stopAll.
func (ss *servers) start(name string, cmd *exec.Cmd) (*server, error) {
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	ss.mu.Lock()
	ss.list = append(ss.list, s)
	ss.mu.Unlock()
	return s, nil
}

// stopAll stops the servers, newest first: SIGTERM, then SIGKILL after
// grace. Only the PIDs this program started are signalled.
func (ss *servers) stopAll(grace time.Duration) {
	ss.mu.Lock()
	list := ss.list
	ss.list = nil
	ss.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop(grace)
	}
}

func (s *server) stop(grace time.Duration) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return
	case <-time.After(grace):
	}
	fmt.Fprintf(os.Stderr, "tokenbench: %s (pid %d) did not stop in %s: killing it\n", s.name, s.cmd.Process.Pid, grace)
	_ = s.cmd.Process.Kill()
	<-s.done
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// cpu is the CPU time (user + system) the process has used so far.
func (s *server) cpu() time.Duration { return procCPU(s.cmd.Process.Pid) }

// procCPU reads utime + stime of a process from /proc; 0 where there is no
// /proc. USER_HZ is 100 on every Linux ABI Go supports.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 { // f[0] is field 3 (state): utime is f[11], stime f[12]
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}

// sampleRSS samples the process's resident set every interval until the
// returned function is called, which returns the largest sample, in bytes.
func (s *server) sampleRSS(interval time.Duration) func() int64 {
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		high := procStatus(s.cmd.Process.Pid, "VmRSS")
		for {
			select {
			case <-stop:
				peak <- max(high, procStatus(s.cmd.Process.Pid, "VmRSS"))
				return
			case <-t.C:
				high = max(high, procStatus(s.cmd.Process.Pid, "VmRSS"))
			}
		}
	}()
	return func() int64 { close(stop); return <-peak }
}

// peakRSS is the largest resident set the process has had (VmHWM), in
// bytes.
func (s *server) peakRSS() int64 { return procStatus(s.cmd.Process.Pid, "VmHWM") }

// procStatus reads a size field (in kB) of /proc/<pid>/status, in bytes;
// 0 where there is none.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls check until it succeeds, s exits, or timeout passes.
func waitFor(ctx context.Context, s *server, timeout time.Duration, what string, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		if s != nil && s.exited() {
			return fmt.Errorf("%s: %s exited: %w", what, s.name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
