// Command tokensvc serves session tokens: partners mint them with
// POST /generate, the editor reads them back with GET /verify.
//
// Run `tokensvc -h` for the commands and every setting.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "tokensvc:", err)
		os.Exit(1)
	}
}
