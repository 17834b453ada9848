package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bundleBytes is the size of every bundle the benchmark mints.
const bundleBytes = 150

// bundle is a realistic editor bundle of exactly bundleBytes bytes; i
// varies the user and the file.
func bundle(i int) string {
	head := fmt.Sprintf(`{"auth":"apiKey","userId":"u-%07d","server":"eu-1","file":"/drawings/projects/p-%05d/`, i%10_000_000, i%100_000)
	tail := `.dwg"}`
	fill := "building-a-floor-2-electrical-plan-rev-7-final-approved-for-construction"
	pad := bundleBytes - len(head) - len(tail)
	if pad < 0 || pad > len(fill) {
		panic("tokenbench: bundle template does not fit 150 bytes")
	}
	return head + fill[:pad] + tail
}

// errRetry marks a 503: the store did not answer in time.
var errRetry = errors.New("/generate answered 503")

// client talks to the tokensvc under test.
type client struct {
	hc   *http.Client
	base string
	key  string
}

func newClient(base, key string, conns int) *client {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	return &client{hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}, base: base, key: key}
}

func (c *client) do(ctx context.Context, method, path, body string, header ...string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// mint asks /generate for one token.
func (c *client) mint(ctx context.Context, body string) (string, error) {
	status, b, err := c.do(ctx, http.MethodPost, "/generate", body, "Content-Type", "application/json", "x-api-key", c.key)
	if err != nil {
		return "", err
	}
	if status == http.StatusServiceUnavailable {
		return "", fmt.Errorf("%w: %s", errRetry, b)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("/generate answered %d: %s", status, b)
	}
	var g struct{ Token string }
	if err := json.Unmarshal(b, &g); err != nil || g.Token == "" {
		return "", fmt.Errorf("/generate answered 200 without a token: %s", b)
	}
	return g.Token, nil
}

// preload mints n tokens through the API, conns requests at a time, and
// says how fast it went.
func (c *client) preload(ctx context.Context, first, n, conns int) ([]string, float64, error) {
	tokens := make([]string, n)
	var next, done, retries atomic.Int64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "  … %d of %d tokens (%.0f/s)\n", d, n, float64(d)/time.Since(start).Seconds())
			}
		}
	}()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				t, err := c.mint(ctx, bundle(first+i))
				// Loading is not measured: on a busy shared machine a
				// store operation may pass the service's 1 s bound (503).
				for try := 1; err != nil && errors.Is(err, errRetry) && try < 5 && ctx.Err() == nil; try++ {
					retries.Add(1)
					time.Sleep(time.Duration(try) * 100 * time.Millisecond)
					t, err = c.mint(ctx, bundle(first+i))
				}
				if err != nil {
					cancel(fmt.Errorf("token %d: %w", first+i, err))
					return
				}
				tokens[i] = t
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	if err := context.Cause(ctx); err != nil {
		return nil, 0, err
	}
	if r := retries.Load(); r > 0 {
		fmt.Fprintf(os.Stderr, "  (%d requests answered 503 and were retried)\n", r)
	}
	return tokens, float64(n) / time.Since(start).Seconds(), nil
}

// sanity checks that each load does what it claims before it is measured:
// /verify gives the bundle back, a batch finds all its tokens valid (with
// batch: the naive server has none), and /generate mints.
func (c *client) sanity(ctx context.Context, tokens []string, batch bool) error {
	status, b, err := c.do(ctx, http.MethodGet, "/verify", "", "x-api-token", tokens[0])
	if err != nil || status != http.StatusOK || !bytes.Equal(b, []byte(bundle(0))) {
		return fmt.Errorf("GET /verify of a preloaded token: %d %v %s (want the bundle back)", status, err, b)
	}
	if !batch {
		_, err := c.mint(ctx, bundle(0))
		return err
	}
	body, _ := json.Marshal(map[string][]string{"tokens": tokens[:batchSize]})
	status, b, err = c.do(ctx, http.MethodPost, "/verify/batch", string(body), "Content-Type", "application/json")
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("POST /verify/batch: %d %v %s", status, err, b)
	}
	var res struct{ Results []struct{ Valid bool } }
	if err := json.Unmarshal(b, &res); err != nil || len(res.Results) != batchSize {
		return fmt.Errorf("POST /verify/batch: not %d results: %s", batchSize, b)
	}
	for i, r := range res.Results {
		if !r.Valid {
			return fmt.Errorf("POST /verify/batch: token %d not valid: %s", i, b)
		}
	}
	if _, err := c.mint(ctx, bundle(0)); err != nil {
		return fmt.Errorf("POST /generate: %w", err)
	}
	return nil
}
