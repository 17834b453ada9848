package storetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// Tests that need something outside Go (a Docker engine, redis-server,
// nginx) call one of these first. Each says in one line what is missing,
// how to get it, and why it is missing, and then:
//
//   - under -short, skips without looking: -short is the fast loop, with
//     no Docker and no external binaries;
//   - on a developer's machine without the thing, skips;
//   - under CI (CI set, and not "false" or "0"), fails instead: CI installs
//     everything, so a skip there would hide that a test did not run.

// dockerInstall is how to get a Docker engine, for the messages.
const dockerInstall = "Debian: apt-get install docker.io, then start dockerd"

// dockerProbeTimeout bounds the probe of the engine: long enough for a
// busy engine to answer, short enough not to hang on an address that
// drops packets.
const dockerProbeTimeout = 10 * time.Second

// NeedDocker skips tb (or fails it under CI) unless a Docker engine answers,
// found the way testcontainers-go finds it (DOCKER_HOST, the default
// socket, ~/.testcontainers.properties, a rootless socket).
func NeedDocker(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: skipped, needs a Docker engine (Redis in a container)")
	}
	if err := dockerReachable(); err != nil {
		need(tb, fmt.Sprintf("needs a Docker engine (%s); none answers: %v", dockerInstall, err))
	}
}

// NeedRedis is NeedDocker for a test on the Redis container that Main
// started for the package: it skips (or fails) when Main started none,
// and returns url.
func NeedRedis(tb testing.TB, url string) string {
	tb.Helper()
	if url != "" {
		return url
	}
	NeedDocker(tb)
	tb.Fatal("no Redis URL although a Docker engine answers: the package's TestMain must call storetest.Main")
	return ""
}

// NeedBinary returns the path of the program name on PATH, or skips tb (or
// fails it under CI) without it; install says how to get it, e.g.
// "apt-get install nginx".
func NeedBinary(tb testing.TB, name, install string) string {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("-short: skipped, needs %s", name)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		need(tb, fmt.Sprintf("needs %s (%s); it is not on PATH", name, install))
	}
	return p
}

// need skips tb with msg, or fails it under CI.
func need(tb testing.TB, msg string) {
	tb.Helper()
	if inCI() {
		tb.Fatal("CI is set, so this fails instead of skipping: " + msg)
	}
	tb.Skip(msg)
}

// inCI reports whether CI is set to something other than false.
func inCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// dockerReachable probes the engine once per test binary: every test that
// needs Docker asks, and the answer does not change within a run.
var dockerReachable = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
	defer cancel()
	return probeDocker(ctx)
})

// probeDocker pings the engine testcontainers-go would use. Without one,
// testcontainers-go panics ("rootless Docker not found") rather than
// returning an error: its host lookup, core.MustExtractDockerHost, runs
// inside NewDockerClientWithOpts, NewDockerProvider and every Run. The
// panic is recovered here and becomes the error, on one line.
func probeDocker(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
		if err != nil {
			err = errors.New(strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
		}
	}()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Ping(ctx)
	return err
}
