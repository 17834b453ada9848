package storetest

import (
	"context"
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
func StartRedis(ctx context.Context) (url string, stop func(), err error) {
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
//
//	func TestMain(m *testing.M) { os.Exit(storetest.Main(m, &redisURL)) }
func Main(m *testing.M, url *string) int {
	u, stop, err := StartRedis(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	*url = u
	return m.Run()
}
