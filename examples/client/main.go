// Command client shows a partner backend using tokensvc's generated Go
// client (package api): mint a token for a user's editor session, build the
// editor URL with it, and verify it as the editor would.
//
//	TOKENSVC_URL=http://localhost:8080 TOKENSVC_KEY=… go run ./examples/client
package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tokensvc/tokensvc/api"
)

func main() {
	if err := run(context.Background(), os.Getenv("TOKENSVC_URL"), os.Getenv("TOKENSVC_KEY")); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, base, key string) error {
	if base == "" || key == "" {
		return fmt.Errorf("set TOKENSVC_URL and TOKENSVC_KEY")
	}
	c, err := api.NewClientWithResponses(base, api.WithHTTPClient(&http.Client{Timeout: 5 * time.Second}))
	if err != nil {
		return err
	}
	withKey := func(_ context.Context, r *http.Request) error { r.Header.Set("x-api-key", key); return nil }

	// Mint: the editor parameters go in the body; policy goes in the query.
	single, private := int64(1), "auth"
	minted, err := c.GenerateWithBodyWithResponse(ctx, &api.GenerateParams{Uses: &single, Private: &private},
		"application/json", strings.NewReader(`{"auth":"editor-api-key","file":"/drawings/1.dwg","userId":"u-42"}`), withKey)
	if err != nil {
		return err
	}
	if minted.JSON200 == nil {
		return fmt.Errorf("generate: %d %s", minted.StatusCode(), minted.Body)
	}
	tok := minted.JSON200

	// The editor URL carries the token instead of the raw parameters.
	editor := "https://editor.example.com/open?" + url.Values{"token": {tok.Token.String()}}.Encode()
	fmt.Printf("editor URL: %s\nexpires at %s\n", editor, time.Unix(tok.ExpirationTime, 0).UTC().Format(time.RFC3339))

	// What the editor frontend does: verify with x-api-token.
	verified, err := c.VerifyWithResponse(ctx, func(_ context.Context, r *http.Request) error {
		r.Header.Set("x-api-token", tok.Token.String())
		return nil
	})
	if err != nil {
		return err
	}
	if verified.StatusCode() != http.StatusOK {
		return fmt.Errorf("verify: %d %s", verified.StatusCode(), verified.Body)
	}
	fmt.Printf("the editor gets: %s\n", verified.Body) // "auth" is private: not shown
	return nil
}
