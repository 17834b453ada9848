package keys

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const partners = `
- id: backend
  server_secret: srv-1
  origins: [app.partner.com]
- id: browser
  client_secret: cli-1
  origins: ['*.partner.com', 'https://partner.com']
- id: anywhere
  client_secret: cli-any
- id: rotating
  server_secret: [rot-old, rot-new]
- id: off
  server_secret: off-1
  client_secret: off-cli
  disabled: true
- id: hashed
  server_secret: sha256:d0ee8c5b5cfe7d3caf43d38b3fb21d02ec30b911c3fff6bd7603b378b15a9787 # printf hashed-1 | sha256sum
`

func TestAuthenticate(t *testing.T) {
	r := newRegistry(t, partners, Options{})
	cases := []struct {
		name           string
		secret, origin string
		wantID         string
		wantKind       SecretKind
		wantErr        error
	}{
		{"server secret without origin", "srv-1", "", "backend", ServerSecret, nil},
		{"server secret from any origin", "srv-1", "https://elsewhere.example", "backend", ServerSecret, nil},
		{"client secret from an allowed origin", "cli-1", "https://a.partner.com", "browser", ClientSecret, nil},
		{"client secret from a deep subdomain", "cli-1", "https://a.b.partner.com:8443", "browser", ClientSecret, nil},
		{"client secret from the bare domain", "cli-1", "https://partner.com", "browser", ClientSecret, nil},
		{"client secret from a disallowed origin", "cli-1", "https://evilpartner.com", "", 0, ErrOriginNotAllowed},
		{"client secret from the null origin", "cli-1", "null", "", 0, ErrOriginNotAllowed},
		{"client secret without origin", "cli-1", "", "", 0, ErrOriginNotAllowed},
		{"client secret, any origin", "cli-any", "https://whoever.example", "anywhere", ClientSecret, nil},
		{"client secret, any origin, still needs one", "cli-any", "", "", 0, ErrOriginNotAllowed},
		{"old secret while rotating", "rot-old", "", "rotating", ServerSecret, nil},
		{"new secret while rotating", "rot-new", "", "rotating", ServerSecret, nil},
		{"disabled key, server secret", "off-1", "", "", 0, ErrUnknownKey},
		{"disabled key, client secret", "off-cli", "https://x.example", "", 0, ErrUnknownKey},
		{"hashed secret in clear", "hashed-1", "", "hashed", ServerSecret, nil},
		{"unknown secret", "nope", "", "", 0, ErrUnknownKey},
		{"empty secret", "", "", "", 0, ErrUnknownKey},
		{"secret with a different case", "SRV-1", "", "", 0, ErrUnknownKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, kind, err := r.Authenticate(c.secret, c.origin)
			if !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
				t.Fatalf("Authenticate(%q, %q) error = %v, want %v", c.secret, c.origin, err, c.wantErr)
			}
			if k.ID != c.wantID || kind != c.wantKind {
				t.Errorf("Authenticate(%q, %q) = key %q, %v; want %q, %v", c.secret, c.origin, k.ID, kind, c.wantID, c.wantKind)
			}
			if err != nil && strings.Contains(err.Error(), c.secret) && c.secret != "" {
				t.Errorf("error %q reveals the secret", err)
			}
		})
	}
}

func TestOriginAllowed(t *testing.T) {
	r := newRegistry(t, partners, Options{})
	cases := []struct {
		id, origin string
		want       bool
	}{
		{"backend", "https://app.partner.com", true},
		{"backend", "https://www.partner.com", false},
		{"browser", "https://www.partner.com", true},
		{"anywhere", "https://whoever.example", true},
		{"anywhere", "null", true},
		{"anywhere", "", false},
		{"off", "https://x.example", false},
		{"missing", "https://app.partner.com", false},
	}
	for _, c := range cases {
		if got := r.OriginAllowed(c.id, c.origin); got != c.want {
			t.Errorf("OriginAllowed(%q, %q) = %v, want %v", c.id, c.origin, got, c.want)
		}
	}
}

func TestAnyOriginAllowed(t *testing.T) {
	restricted := `
- {id: a, server_secret: a, origins: ['app.partner.com:8443', 'https://partner.com']}
- {id: b, client_secret: b, origins: ['*.b.example']}
- {id: c, server_secret: c, disabled: true}
- {id: d, server_secret: d, disabled: true, origins: [other.example]}
`
	r := newRegistry(t, restricted, Options{})
	cases := []struct {
		origin string
		want   bool
	}{
		{"https://app.partner.com:8443", true},
		{"https://app.partner.com", false},
		{"http://partner.com:3000", true},
		{"https://x.b.example", true},
		{"https://b.example", false},
		{"https://other.example", false}, // only a disabled key allows it
		{"null", false},
		{"", false},
	}
	for _, c := range cases {
		if got := r.AnyOriginAllowed(c.origin); got != c.want {
			t.Errorf("AnyOriginAllowed(%q) = %v, want %v", c.origin, got, c.want)
		}
	}
	// An enabled key without origins allows them all.
	if r := newRegistry(t, partners, Options{}); !r.AnyOriginAllowed("https://whoever.example") {
		t.Error("a key without origins does not open CORS to every origin")
	}
}

func TestByIDAndKeys(t *testing.T) {
	r := newRegistry(t, partners, Options{})
	k, ok := r.ByID("browser")
	want := Key{ID: "browser", Origins: []string{"*.partner.com", "https://partner.com"}, HasClientSecret: true, Source: "inline"}
	if diff := cmp.Diff(want, k); !ok || diff != "" {
		t.Errorf("ByID(browser) ok=%v (-want +got):\n%s", ok, diff)
	}
	k.Origins[0] = "*" // the caller's copy, not the registry's
	if _, _, err := r.Authenticate("cli-1", "https://evil.example"); !errors.Is(err, ErrOriginNotAllowed) {
		t.Errorf("changing a returned Key changed the registry: %v", err)
	}
	if _, ok := r.ByID("missing"); ok {
		t.Error("ByID(missing) found a key")
	}
	if k, ok := r.ByID("off"); !ok || !k.Disabled {
		t.Errorf("ByID(off) = %+v, %v; want the disabled key", k, ok)
	}
	var ids []string
	for _, k := range r.Keys() {
		ids = append(ids, k.ID)
	}
	if diff := cmp.Diff([]string{"anywhere", "backend", "browser", "hashed", "off", "rotating"}, ids); diff != "" {
		t.Errorf("Keys() ids (-want +got):\n%s", diff)
	}
}

// manyKeys is a JSON array of n keys p00000…, each with server secret
// secret-<i> and client secret web-<i>.
func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"id": "p%05d", "server_secret": "secret-%d", "client_secret": "web-%d", "origins": ["p%d.example"]}`, i, i, i, i)
	}
	b.WriteString("]")
	return b.String()
}

func TestTenThousandKeys(t *testing.T) {
	r := newRegistry(t, manyKeys(10000), Options{})
	if got := r.Status().Keys; got != 10000 {
		t.Fatalf("Status().Keys = %d, want 10000", got)
	}
	if k, _, err := r.Authenticate("secret-9999", ""); err != nil || k.ID != "p09999" {
		t.Errorf("Authenticate(last server secret) = %q, %v", k.ID, err)
	}
	if k, _, err := r.Authenticate("web-9999", "https://p9999.example"); err != nil || k.ID != "p09999" {
		t.Errorf("Authenticate(last client secret) = %q, %v", k.ID, err)
	}
	if _, _, err := r.Authenticate("web-9999", "https://p9998.example"); !errors.Is(err, ErrOriginNotAllowed) {
		t.Errorf("Authenticate(last client secret, a neighbour's origin) = %v", err)
	}
	if _, _, err := r.Authenticate("secret-10000", ""); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Authenticate(unknown) = %v", err)
	}
	if !r.AnyOriginAllowed("https://p9999.example") || r.AnyOriginAllowed("https://p10000.example") {
		t.Error("AnyOriginAllowed is wrong for 10,000 exact origins")
	}
}

// BenchmarkAuthenticate10k compares 10 and 10,000 keys: the time per lookup
// should be about the same, since lookups index by the secret's hash.
func BenchmarkAuthenticate10k(b *testing.B) {
	for _, n := range []int{10, 10000} {
		r := newRegistry(b, manyKeys(n), Options{})
		server, client, origin := fmt.Sprintf("secret-%d", n-1), fmt.Sprintf("web-%d", n-1), fmt.Sprintf("https://p%d.example", n-1)
		b.Run(fmt.Sprintf("keys=%d/server", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := r.Authenticate(server, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("keys=%d/client", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := r.Authenticate(client, origin); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("keys=%d/unknown", n), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := r.Authenticate("no-such-secret", ""); err == nil {
					b.Fatal("authenticated")
				}
			}
		})
	}
}

// TestConcurrentReload runs lookups while reloads swap the set; with -race
// it checks that readers only ever see whole snapshots.
func TestConcurrentReload(t *testing.T) {
	path := writeKeys(t, t.TempDir(), `{"tokens": [{"id": "a", "server_secret": "s"}]}`)
	r := newRegistry(t, "file://"+path, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				k, _, err := r.Authenticate("s", "")
				if err != nil || (k.ID != "a" && k.ID != "b") {
					t.Errorf("Authenticate during reload = %q, %v", k.ID, err)
					return
				}
				r.AnyOriginAllowed("https://x.example")
				r.Keys()
			}
		})
	}
	for i := range 50 {
		id := []string{"b", "a"}[i%2]
		rewrite(t, path, fmt.Sprintf(`{"tokens": [{"id": %q, "server_secret": "s"}]}`, id), i+1)
		if err := r.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if got := r.Status().Generation; got != 51 {
		t.Errorf("Generation = %d, want 51", got)
	}
}
