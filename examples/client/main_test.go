package main

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/store"
)

// The example runs against a real server.
func TestExample(t *testing.T) {
	reg, err := keys.New(context.Background(), "example-key", keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mem := store.NewMemory(nil, 0)
	defer mem.Close()
	srv, err := server.New(server.Config{Store: mem, Partners: reg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	if err := run(context.Background(), ts.URL, "example-key"); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), ts.URL, "wrong-key"); err == nil {
		t.Fatal("a wrong key minted")
	}
}
