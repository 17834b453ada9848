package storetest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// RedisImageEnv names the variable that chooses the Redis image of the
// tests. CI sets it to a locally built image; the default is public.
const RedisImageEnv = "TOKENSVC_TEST_REDIS_IMAGE"

// DefaultRedisImage is pulled when RedisImageEnv is unset.
const DefaultRedisImage = "redis:7-alpine"

// StartRedis starts a Redis container for a test binary (call it from
// TestMain) and returns its redis:// URL and a function that removes it.
// Without a Docker engine it returns an error (testcontainers-go alone
// would panic); a test calls NeedDocker first to skip instead.
func StartRedis(ctx context.Context) (url string, stop func(), err error) {
	if err := dockerReachable(); err != nil {
		return "", nil, fmt.Errorf("start Redis container: no Docker engine: %w", err)
	}
	image := os.Getenv(RedisImageEnv)
	if image == "" {
		image = DefaultRedisImage
	}
	c, err := tcredis.Run(ctx, image)
	if err != nil {
		if c != nil {
			_ = testcontainers.TerminateContainer(c)
		}
		return "", nil, fmt.Errorf("start Redis container %s: %w", image, err)
	}
	url, err = c.ConnectionString(ctx)
	if err != nil {
		_ = testcontainers.TerminateContainer(c)
		return "", nil, err
	}
	return url, func() { _ = testcontainers.TerminateContainer(c) }, nil
}

// Main is a TestMain for packages whose tests share one Redis container:
// it starts the container, sets *url, runs the tests and removes it.
// Under -short, or without a Docker engine, it starts nothing and leaves
// *url empty: the tests on the container call NeedRedis and skip (or fail
// under CI), the others run.
//
//	func TestMain(m *testing.M) { os.Exit(storetest.Main(m, &redisURL)) }
func Main(m *testing.M, url *string) int {
	flag.Parse() // for testing.Short; m.Run does not parse again
	if testing.Short() || dockerReachable() != nil {
		return m.Run()
	}
	u, stop, err := StartRedis(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	*url = u
	return m.Run()
}
