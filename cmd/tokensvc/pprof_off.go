//go:build !pprof

package main

import "log/slog"

// startProfiling does nothing: pprof is only in a binary built with
// -tags pprof (see pprof.go).
func startProfiling(*slog.Logger) {}
