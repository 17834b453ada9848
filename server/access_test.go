package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/server/ratelimit"
	"github.com/tokensvc/tokensvc/store"
)

// A client secret lives in web pages: it unlocks neither private fields
// nor token management (issue: "a client secret unlocks private fields").
func TestClientSecretIsPublic(t *testing.T) {
	h := newHarness(t, withKeys(t, webKeys))
	res := h.do(t, "POST", "/generate?private=auth", `{"file":"/a","auth":"partner-api-key"}`, jsonCT, "x-api-key: ss-web-123")
	token, id := res.json(t)["token"].(string), res.json(t)["token_id"].(string)
	browser := []string{"Origin: https://app.example.com", "x-api-key: cs-web-123"}
	if res := h.verify(t, token, browser...); string(res.body) != `{"file":"/a"}` {
		t.Errorf("verify with the client secret: %d %s", res.status, res.body)
	}
	res = h.do(t, "POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q]}`, token), append([]string{jsonCT}, browser...)...)
	if strings.Contains(string(res.body), "partner-api-key") {
		t.Errorf("batch with the client secret: %s", res.body)
	}
	wantError(t, h.do(t, "GET", "/tokens/"+id, "", browser...), 403, "server_secret_required")
	wantError(t, h.do(t, "DELETE", "/tokens/"+id, "", browser...), 403, "server_secret_required")
	if res := h.verify(t, token, "x-api-key: ss-web-123"); string(res.body) != `{"file":"/a","auth":"partner-api-key"}` {
		t.Errorf("verify with the server secret: %d %s", res.status, res.body)
	}
}

// A key removed from the key source takes its tokens with it, everywhere,
// and for good: they do not come back with the key.
func TestRemovedKeyTokensAreRevoked(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			write := func(keys string) {
				if err := os.WriteFile(path, []byte(keys), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			both := `[{"id":"stays","server_secret":"stays-123"},{"id":"leaked","server_secret":"leaked-123"}]`
			write(both)
			var reg *keys.Registry
			h := newHarness(t, func(c *Config) {
				var err error
				if reg, err = keys.New(context.Background(), "file://"+path, keys.Options{}); err != nil {
					t.Fatal(err)
				}
				c.Partners = reg
				c.KeepRemovedKeyTokens = keep
				c.ForwardFields = []string{"a"}
			})
			if err := h.srv.SyncKeys(context.Background()); err != nil { // as at start-up
				t.Fatal(err)
			}
			reg.OnChange(h.srv.KeysChanged)
			res := h.do(t, "POST", "/generate?ttl=86400", `{"a":1}`, jsonCT, "x-api-key: leaked-123")
			token, id := res.json(t)["token"].(string), res.json(t)["token_id"].(string)
			write(`[{"id":"stays","server_secret":"stays-123"}]`)
			if err := reg.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			wantError(t, h.do(t, "POST", "/generate", `{}`, jsonCT, "x-api-key: leaked-123"), 403, "invalid_api_key")
			wantError(t, h.verify(t, token), 403, "token_revoked")
			wantError(t, h.do(t, "GET", "/auth", "", "x-api-token: "+token), 403, "token_revoked")
			wantError(t, h.do(t, "POST", "/refresh", "", "x-api-token: "+token), 403, "token_revoked")
			res = h.do(t, "POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q]}`, token), jsonCT)
			if !strings.Contains(string(res.body), "token_revoked") {
				t.Errorf("batch: %s", res.body)
			}
			wantError(t, h.do(t, "GET", "/tokens/"+id, "", "x-api-key: stays-123"), 404, "not_found")

			write(both) // the key comes back
			if err := reg.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			res = h.verify(t, token)
			switch {
			case keep && res.status != 200:
				t.Errorf("kept token after the key came back: %d %s", res.status, res.body)
			case !keep:
				wantError(t, res, 403, "token_revoked")
				if got := h.do(t, "GET", "/tokens/"+id, "", "x-api-key: leaked-123").json(t)["state"]; got != "revoked" {
					t.Errorf("state seen by the key that came back = %v, want revoked", got)
				}
			}
		})
	}
}

// A refresh needs a token with uses left: the reuse grace lets the same
// token verify again, it does not reset the count.
func TestRefreshNeedsUsesLeft(t *testing.T) {
	h := newHarness(t, nil)
	token := h.mint(t, "?uses=1&reuse_grace=10", `{"a":1}`)
	if res := h.verify(t, token); res.status != 200 {
		t.Fatal(res.status)
	}
	wantError(t, h.do(t, "POST", "/refresh", "", "x-api-token: "+token), 403, "token_used")
	if res := h.verify(t, token); res.status != 200 {
		t.Errorf("a refused refresh ended the grace: %d", res.status)
	}
}

// putFails is a store whose Put runs before at the moment a refresh stores
// its new token, and then fails.
type putFails struct {
	Store
	before func()
}

func (p putFails) Put(ctx context.Context, id store.ID, rec store.Record, note string) error {
	p.before()
	return fmt.Errorf("no room: %w", store.ErrUnavailable)
}

// A refresh whose new token cannot be stored puts the old one back, but
// never over a revocation that landed meanwhile.
func TestFailedRefreshKeepsARevoke(t *testing.T) {
	h := newHarness(t, nil)
	token := h.mint(t, "", `{"a":1}`)
	mem := h.srv.cfg.Store
	id := tokenID(token)
	failing := putFails{Store: mem, before: func() {}}
	h.srv.cfg.Store = failing
	wantError(t, h.do(t, "POST", "/refresh", "", "x-api-token: "+token), 503, "store_unavailable")
	h.srv.cfg.Store = mem
	if res := h.verify(t, token); res.status != 200 {
		t.Fatalf("a failed refresh did not put the token back: %d %s", res.status, res.body)
	}

	failing.before = func() {
		if err := mem.Revoke(context.Background(), id, h.clock.Now(), ""); err != nil {
			t.Error(err)
		}
	}
	h.srv.cfg.Store = failing
	wantError(t, h.do(t, "POST", "/refresh", "", "x-api-token: "+token), 503, "store_unavailable")
	h.srv.cfg.Store = mem
	wantError(t, h.verify(t, token), 403, "token_revoked")
}

// A batch's failed checks are charged to the brute-force allowance before
// its results are answered; valid tokens cost nothing.
func TestBatchCannotGuessPastTheGuard(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		withLimits(ratelimit.Limit{N: 100, Per: time.Minute})(c)
	})
	batch := func(tokens []string) response {
		return h.do(t, "POST", "/verify/batch", `{"tokens":["`+strings.Join(tokens, `","`)+`"]}`, jsonCT)
	}
	good := make([]string, 100)
	for i := range good {
		good[i] = h.mint(t, "", `{"a":1}`)
	}
	for i := 0; i < 3; i++ { // valid tokens are given back
		if res := batch(good); res.status != 200 {
			t.Fatalf("good batch %d: %d %s", i, res.status, res.body)
		}
	}
	bad := make([]string, 100)
	for i := range bad {
		bad[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	}
	if res := batch(bad); res.status != 200 {
		t.Fatalf("first bad batch: %d", res.status)
	}
	res := batch(bad)
	wantError(t, res, 429, "rate_limited")
	if res.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if _, err := New(Config{Store: h.srv.cfg.Store, Partners: h.srv.cfg.Partners, Limiter: h.srv.cfg.Limiter,
		FailureRate: ratelimit.Limit{N: 10, Per: time.Minute}, MaxBatch: 100}); err == nil {
		t.Error("New took a guard smaller than a batch: every full batch would be refused")
	}
}

// barrierStore holds every ConsumeMany until n of them are in flight, so
// that n batches are checked at the same time.
type barrierStore struct {
	Store
	n       int
	mu      sync.Mutex
	waiting int
	all     chan struct{}
}

func (b *barrierStore) ConsumeMany(ctx context.Context, ids []store.ID, now time.Time, note string) []store.Result {
	b.mu.Lock()
	if b.waiting++; b.waiting == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-time.After(5 * time.Second): // a bug elsewhere: fail by the answers, not by a hang
	}
	return b.Store.ConsumeMany(ctx, ids, now, note)
}

// Batches from one client checked at the same time: valid ones all pass
// (the guard is charged with failures only, so a partner's backend may
// verify in parallel), and bad ones reveal no more failed checks, all
// together, than the guard allows (one full batch of 100 here).
func TestBatchesAtOnce(t *testing.T) {
	const n = 8
	var bs *barrierStore
	h := newHarness(t, func(c *Config) {
		withLimits(ratelimit.Limit{N: 100, Per: time.Minute})(c)
		bs = &barrierStore{Store: c.Store, n: n, all: make(chan struct{})}
		c.Store = bs
	})
	good := make([]string, 100)
	for i := range good {
		good[i] = h.mint(t, "", `{"a":1}`)
	}
	bad := make([]string, 100)
	for i := range bad {
		bad[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	}
	send := func(tokens []string) []int {
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() {
				statuses[i] = h.do(t, "POST", "/verify/batch", `{"tokens":["`+strings.Join(tokens, `","`)+`"]}`, jsonCT).status
			})
		}
		wg.Wait()
		return statuses
	}
	for i, st := range send(good) {
		if st != 200 {
			t.Errorf("good batch %d of %d at once: %d, want 200", i+1, n, st)
		}
	}
	bs.mu.Lock()
	bs.waiting, bs.all = 0, make(chan struct{})
	bs.mu.Unlock()
	count := map[int]int{}
	for _, st := range send(bad) {
		count[st]++
	}
	if count[200] != 1 || count[429] != n-1 {
		t.Errorf("%d bad batches of 100 at once, guard 100/m: statuses %v, want one 200 and the rest 429", n, count)
	}
}

// A browser's batch is held to the origins of each token's key before any
// use is spent.
func TestBatchChecksOriginsBeforeUse(t *testing.T) {
	h := newHarness(t, withKeys(t, webKeys))
	res := h.do(t, "POST", "/generate?uses=1", `{"a":1}`, jsonCT, "x-api-key: ss-web-123")
	token := res.json(t)["token"].(string)
	res = h.do(t, "POST", "/verify/batch", fmt.Sprintf(`{"tokens":[%q]}`, token), jsonCT, "Origin: https://evil.test")
	if !strings.Contains(string(res.body), "origin_not_allowed") {
		t.Fatalf("batch from a disallowed origin: %s", res.body)
	}
	if res := h.verify(t, token, "Origin: https://app.example.com"); res.status != 200 {
		t.Errorf("the disallowed batch spent the use: %d %s", res.status, res.body)
	}
}

// Failed partner keys and admin tokens are guesses too.
func TestGuardCountsKeyAndAdminGuesses(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		withLimits(ratelimit.Limit{N: 100, Per: time.Minute})(c)
		c.AdminToken = "admin-secret-token"
	})
	for i := 0; i < 50; i++ {
		wantError(t, h.do(t, "POST", "/generate", `{}`, jsonCT, fmt.Sprintf("x-api-key: guess-%d", i)), 403, "invalid_api_key")
		wantError(t, h.do(t, "GET", "/admin/keys", "", fmt.Sprintf("X-Admin-Token: guess-%d", i)), 401, "unauthorized")
	}
	wantError(t, h.do(t, "GET", "/tokens/00000000000000000000000000000000", "", "x-api-key: guess"), 429, "rate_limited")
	wantError(t, h.do(t, "GET", "/admin/keys", "", "X-Admin-Token: admin-secret-token"), 429, "rate_limited")
	if n := strings.Count(h.logs.String(), "client refused after too many failed checks"); n != 1 {
		t.Errorf("logged the refusal %d times, want once per burst", n)
	}
	if res := h.do(t, "GET", "/admin/keys", "", "X-Admin-Token: admin-secret-token", "RemoteAddr: 198.51.100.9:1"); res.status != 200 {
		t.Errorf("another client: %d", res.status)
	}
}

// IPv6 clients are limited per /64; the set of refused clients is bounded.
func TestGuardClients(t *testing.T) {
	for ip, want := range map[string]string{
		"198.51.100.7":            "198.51.100.7",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":    "2001:db8:1:2::/64",
		"::ffff:198.51.100.7":     "::ffff:198.51.100.7",
		"not an address":          "not an address",
		"2001:db8:1:3:3:4:5:6%en": "2001:db8:1:3::/64",
	} {
		if got := client(ip); got != want {
			t.Errorf("client(%q) = %q, want %q", ip, got, want)
		}
	}
	now := time.Unix(1_800_000_000, 0)
	g := &guard{now: func() time.Time { return now }, blocked: map[string]time.Time{}}
	for i := 0; i < maxBlocked+500; i++ {
		g.block(fmt.Sprint(i), now.Add(time.Minute))
	}
	if len(g.blocked) > maxBlocked {
		t.Errorf("%d clients remembered, want at most %d", len(g.blocked), maxBlocked)
	}
	now = now.Add(2 * time.Minute)
	g.block("late", now.Add(time.Minute))
	if len(g.blocked) != 1 {
		t.Errorf("expired clients kept: %d remembered", len(g.blocked))
	}
}

// Credential headers sent twice are refused: which one counts is not a
// proxy's choice.
func TestDuplicateCredentialHeaders(t *testing.T) {
	h := newHarness(t, nil)
	token := h.mint(t, "", `{"a":1}`)
	for _, name := range []string{"x-api-key", "x-api-token", "Authorization", "Origin", "X-Admin-Token"} {
		req := httptest.NewRequest("GET", "/verify", nil)
		req.Header.Set("x-api-token", token)
		req.Header.Add(name, "one")
		req.Header.Add(name, "two")
		rec := httptest.NewRecorder()
		h.srv.ServeHTTP(rec, req)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"bad_request"`) {
			t.Errorf("%s twice: %d %s", name, rec.Code, rec.Body)
		}
	}
}

// forgetful forgets every key after its first Authenticate: a key removed
// while a slow client was still sending its body.
type forgetful struct {
	Partners
	calls int
}

func (f *forgetful) Authenticate(secret, origin string) (keys.Key, keys.SecretKind, error) {
	if f.calls++; f.calls > 1 {
		return keys.Key{}, 0, keys.ErrUnknownKey
	}
	return f.Partners.Authenticate(secret, origin)
}

// A secret removed between the headers and the end of the body mints
// nothing.
func TestMintRechecksTheKey(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Partners = &forgetful{Partners: c.Partners} })
	wantError(t, h.do(t, "POST", "/generate", `{"a":1}`, jsonCT, "x-api-key: "+partnerKey), 403, "invalid_api_key")
}

// A client secret never replays what the server secret minted under the
// same Idempotency-Key; another lifetime or a used-up token is a conflict.
func TestIdempotencyKeyPerSecretAndRequest(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		withKeys(t, webKeys)(c)
		c.IdempotencySecret = []byte("0123456789abcdef0123456789abcdef")
	})
	server := []string{jsonCT, "x-api-key: ss-web-123", "Idempotency-Key: order-1"}
	client := []string{jsonCT, "x-api-key: cs-web-123", "Origin: https://app.example.com", "Idempotency-Key: order-1"}
	first := h.do(t, "POST", "/generate?uses=1", `{"a":1}`, server...).json(t)["token"]
	if got := h.do(t, "POST", "/generate?uses=1", `{"a":1}`, client...).json(t)["token"]; got == first {
		t.Fatal("the client secret got the server secret's token back")
	}
	wantError(t, h.do(t, "POST", "/generate?uses=1&ttl=86400", `{"a":1}`, server...), 409, "idempotency_conflict")
	if res := h.verify(t, first.(string)); res.status != 200 {
		t.Fatal(res.status)
	}
	wantError(t, h.do(t, "POST", "/generate?uses=1", `{"a":1}`, server...), 409, "idempotency_conflict")
}

// counting counts the uses asked of the store, each taking a while, as
// over a network, so that concurrent requests are in flight together.
type counting struct {
	Store
	mu       sync.Mutex
	consumes int
	latency  time.Duration
}

func (c *counting) Consume(ctx context.Context, id store.ID, now time.Time, note string) (store.Record, error) {
	c.mu.Lock()
	c.consumes++
	c.mu.Unlock()
	time.Sleep(c.latency)
	return c.Store.Consume(ctx, id, now, note)
}

// A client that failed lately has each check taken from its allowance
// first: 50 guesses at once, with room for one, reach the store once.
func TestGuardHoldsConcurrentGuesses(t *testing.T) {
	var st *counting
	h := newHarness(t, func(c *Config) {
		withLimits(ratelimit.Limit{N: 100, Per: time.Minute})(c)
		st = &counting{Store: c.Store}
		c.Store = st
	})
	bad := "00000000-0000-4000-8000-000000000000"
	for i := 0; i < 100; i++ {
		wantError(t, h.verify(t, bad), 403, "invalid_token")
	}
	wantError(t, h.verify(t, bad), 429, "rate_limited")
	h.clock.Add(700 * time.Millisecond) // room for one more check
	st.consumes, st.latency = 0, 20*time.Millisecond
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("GET", "/verify", nil)
			req.Header.Set("x-api-token", bad)
			rec := httptest.NewRecorder()
			h.srv.ServeHTTP(rec, req)
			codes[i] = rec.Code
		}()
	}
	wg.Wait()
	if st.consumes > 1 {
		t.Errorf("%d of 50 concurrent guesses reached the store, want at most 1 (codes %v)", st.consumes, codes)
	}
	// Good credentials are refused too while the client is over the limit.
	good := h.mint(t, "", `{"a":1}`, "RemoteAddr: 198.51.100.50:1")
	wantError(t, h.verify(t, good), 429, "rate_limited")
}

// A key removed while the service was down (inline keys change with a
// restart) is found gone at the next start-up: its tokens do not come back
// with it.
func TestKeyRemovedAcrossARestart(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	mem := store.NewMemory(clock.Now, time.Hour)
	t.Cleanup(func() { mem.Close() })
	boot := func(spec string) *harness {
		h := newHarness(t, func(c *Config) {
			c.Store, c.Now = mem, clock.Now
			withKeys(t, spec)(c)
		})
		if err := h.srv.SyncKeys(context.Background()); err != nil {
			t.Fatal(err)
		}
		return h
	}
	both := `[{"id":"stays","server_secret":"stays-123"},{"id":"acme","server_secret":"leaked-123"}]`
	h := boot(both)
	token := h.do(t, "POST", "/generate", `{"a":1}`, jsonCT, "x-api-key: leaked-123").json(t)["token"].(string)
	h = boot(`[{"id":"stays","server_secret":"stays-123"}]`)
	wantError(t, h.verify(t, token), 403, "token_revoked")
	h = boot(`[{"id":"stays","server_secret":"stays-123"},{"id":"acme","server_secret":"rotated-456"}]`)
	wantError(t, h.verify(t, token), 403, "token_revoked")
	if res := h.verify(t, h.do(t, "POST", "/generate", `{"a":2}`, jsonCT, "x-api-key: rotated-456").json(t)["token"].(string)); res.status != 200 {
		t.Errorf("a token of the returned key: %d %s", res.status, res.body)
	}
}

// revokesDuringRefresh revokes the minting key right after a Take, as an
// operator's revoke-tokens landing in the middle of a refresh.
type revokesDuringRefresh struct{ Store }

func (r revokesDuringRefresh) Take(ctx context.Context, id store.ID, now time.Time) (store.Record, error) {
	rec, err := r.Store.Take(ctx, id, now)
	if err == nil {
		_, err = r.Store.RevokeKey(ctx, rec.KeyID)
	}
	return rec, err
}

// A key-wide revocation during a refresh ends the successor too.
func TestRefreshAcrossAKeyRevocation(t *testing.T) {
	h := newHarness(t, nil)
	h.clock.Add(time.Second)
	token := h.mint(t, "", `{"a":1}`)
	h.clock.Add(time.Second)
	h.srv.cfg.Store = revokesDuringRefresh{h.srv.cfg.Store}
	res := h.do(t, "POST", "/refresh", "", "x-api-token: "+token)
	if res.status != 200 {
		t.Fatalf("refresh: %d %s", res.status, res.body)
	}
	wantError(t, h.verify(t, res.json(t)["token"].(string)), 403, "token_revoked")
}
