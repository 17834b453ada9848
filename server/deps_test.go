package server

import (
	"os/exec"
	"strings"
	"testing"
)

// The server, everything under it (the limits, the key parser) and the
// store package it takes records and errors from need no Redis client:
// Redis-backed things live in store/redisstore, which only cmd wires in.
func TestNoRedis(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...", "../store").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "go-redis") || strings.Contains(dep, "redis_rate") {
			t.Errorf("server/... or store depends on %s", dep)
		}
	}
}
