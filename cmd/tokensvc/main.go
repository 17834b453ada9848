// Command tokensvc serves session tokens: partners mint them with
// POST /generate, the editor reads them back with GET /verify.
//
// Run `tokensvc -h` for the commands and every setting.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// go-redis's own messages (dial failures) as JSON lines too. Global, so
	// set once here rather than per run.
	redis.SetLogger(redisLogger{slog.New(slog.NewJSONHandler(os.Stderr, nil))})
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "tokensvc:", err)
		os.Exit(1)
	}
}
