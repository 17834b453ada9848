package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/migrations"
	"github.com/tokensvc/tokensvc/store/storetest"
)

var redisURL string

func TestMain(m *testing.M) { os.Exit(storetest.Main(m, &redisURL)) }

var n atomic.Int64

func client(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	opts, err := redis.ParseURL(storetest.NeedRedis(t, redisURL))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c, fmt.Sprintf("mig%d:", n.Add(1))
}

func TestCheckNamesTheCommandOnAnEmptyRedis(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	err := migrations.Check(context.Background(), c, prefix)
	if !errors.Is(err, migrations.ErrOutdated) || !strings.Contains(err.Error(), "tokensvc migrate") {
		t.Fatalf("Check = %v, want ErrOutdated naming `tokensvc migrate`", err)
	}
}

func TestApplyThenCheck(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	res, err := migrations.Apply(ctx, c, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 0 || res.To != migrations.Layout || len(res.Applied) != migrations.Layout {
		t.Fatalf("first Apply = %+v", res)
	}
	if err := migrations.Check(ctx, c, prefix); err != nil {
		t.Fatalf("Check after Apply: %v", err)
	}
	res, err = migrations.Apply(ctx, c, prefix)
	if err != nil || res.From != migrations.Layout || len(res.Applied) != 0 {
		t.Fatalf("second Apply = %+v, %v; want a no-op", res, err)
	}
}

func TestApplyConcurrently(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := migrations.Apply(ctx, c, prefix); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v, err := migrations.Version(ctx, c, prefix); err != nil || v != migrations.Layout {
		t.Fatalf("Version = %d, %v", v, err)
	}
}

func TestNewerLayoutIsRefused(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	if err := c.Set(ctx, prefix+"layout", migrations.Layout+1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Check(ctx, c, prefix); !errors.Is(err, migrations.ErrTooNew) {
		t.Fatalf("Check = %v, want ErrTooNew", err)
	}
	if _, err := migrations.Apply(ctx, c, prefix); !errors.Is(err, migrations.ErrTooNew) {
		t.Fatalf("Apply = %v, want ErrTooNew", err)
	}
	if v, _ := migrations.Version(ctx, c, prefix); v != migrations.Layout+1 {
		t.Fatalf("Apply lowered the layout to %d", v)
	}
}

func TestGarbageLayoutIsAnError(t *testing.T) {
	t.Parallel()
	c, prefix := client(t)
	ctx := context.Background()
	c.Set(ctx, prefix+"layout", "banana", 0)
	if err := migrations.Check(ctx, c, prefix); err == nil || errors.Is(err, migrations.ErrOutdated) {
		t.Fatalf("Check = %v, want a plain error", err)
	}
}
