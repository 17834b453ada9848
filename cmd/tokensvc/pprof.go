//go:build pprof

package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// startProfiling serves net/http/pprof on TOKENSVC_PPROF_ADDR, in a binary
// built with -tags pprof only (tokenbench -profile builds one): never in a
// release build, whose settings table does not know the variable.
func startProfiling(log *slog.Logger) {
	addr := os.Getenv("TOKENSVC_PPROF_ADDR")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("pprof: listen", "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	log.Info("pprof listening", "addr", ln.Addr().String())
	go func() { _ = http.Serve(ln, mux) }()
}
