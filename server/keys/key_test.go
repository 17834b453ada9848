package keys

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newRegistry(tb testing.TB, spec string, opts Options) *Registry {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := New(context.Background(), spec, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return r
}

// idOf is the id derived for a key with these clear secrets.
func idOf(secrets ...string) string {
	var hashes [][32]byte
	for _, s := range secrets {
		h, _ := secretHash(s)
		hashes = append(hashes, h)
	}
	return deriveID(hashes)
}

func TestSourceForms(t *testing.T) {
	plain := func(secret string) Key {
		return Key{ID: idOf(secret), HasServerSecret: true, HasClientSecret: true, Source: "inline"}
	}
	jitsu := []Key{
		{ID: "unique_tokenId", Origins: []string{"*abc.com", "efg.com"}, HasServerSecret: true, HasClientSecret: true, Source: "inline"},
		{ID: "unique_tokenId2", HasClientSecret: true, Source: "inline"},
		{ID: "unique_tokenId3", HasServerSecret: true, Source: "inline"},
	}
	cases := []struct {
		name string
		spec string
		want []Key
	}{
		{"YAML list (Jitsu's example)", `
- id: unique_tokenId
  client_secret: bd33c5fa-d69f-11ea-87d0-0242ac130003
  server_secret: 5f15eba2-db58-11ea-87d0-0242ac130003
  origins:
    - '*abc.com'
    - 'efg.com'
- id: unique_tokenId2
  client_secret: 123jsy213c5fa-c20765a0-d69f003
- id: unique_tokenId3
  server_secret: 231dasds-3211kb3rdf-412dkjnabf
`, jitsu},
		{"JSON array", `[
	{"id": "unique_tokenId", "client_secret": "bd33c5fa", "server_secret": "5f15eba2", "origins": ["*abc.com", "efg.com"]},
	{"id": "unique_tokenId2", "client_secret": "123jsy213c5fa"},
	{"id": "unique_tokenId3", "server_secret": "231dasds"}
]`, jitsu},
		{"tokens object", `{"tokens": [{"id": "p", "server_secret": "s", "max_ttl": "1h", "default_ttl": 600, "disabled": true}]}`,
			[]Key{{ID: "p", MaxTTL: time.Hour, DefaultTTL: 10 * time.Minute, Disabled: true, HasServerSecret: true, Source: "inline"}}},
		{"single-line tokens object in YAML", `tokens: [{id: p, server_secret: s, default_ttl: "90"}]`,
			[]Key{{ID: "p", DefaultTTL: 90 * time.Second, HasServerSecret: true, Source: "inline"}}},
		{"plain string", "193b6281-f211-47a9-b384-102cf4cd2d55", []Key{plain("193b6281-f211-47a9-b384-102cf4cd2d55")}},
		{"plain string with YAML characters", "*&!%@secret", []Key{plain("*&!%@secret")}},
		{"comma list", " one, two ,three,", []Key{plain("one"), plain("three"), plain("two")}},
		{"YAML list of plain strings", "- one\n- two\n", []Key{plain("one"), plain("two")}},
		{"secret lists", `[{"id": "r", "server_secret": ["old", "new"], "client_secret": ["c1", "", null]}]`,
			[]Key{{ID: "r", HasServerSecret: true, HasClientSecret: true, Source: "inline"}}},
		{"derived id", `[{"server_secret": "s1", "client_secret": "c1", "origins": "x.com"}]`,
			[]Key{{ID: idOf("s1", "c1"), Origins: []string{"x.com"}, HasServerSecret: true, HasClientSecret: true, Source: "inline"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRegistry(t, c.spec, Options{})
			want := c.want
			sortKeys(want)
			if diff := cmp.Diff(want, r.Keys()); diff != "" {
				t.Errorf("Keys() (-want +got):\n%s", diff)
			}
			if st := r.Status(); st.Kind != KindInline || st.Source != "inline" || st.Generation != 1 || st.Keys != len(want) {
				t.Errorf("Status() = %+v", st)
			}
		})
	}
}

func sortKeys(ks []Key) {
	slices.SortFunc(ks, func(a, b Key) int { return strings.Compare(a.ID, b.ID) })
}

func TestPlainSecretIsServerAndClient(t *testing.T) {
	r := newRegistry(t, "p1,p2", Options{})
	for _, origin := range []string{"", "https://anywhere.example", "null"} {
		for _, s := range []string{"p1", "p2"} {
			if k, _, err := r.Authenticate(s, origin); err != nil || k.ID != idOf(s) {
				t.Errorf("Authenticate(%q, %q) = %q, %v", s, origin, k.ID, err)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	const secret = "s3cr3t"
	cases := []struct {
		name, spec, want string
	}{
		{"empty spec", "  ", "no API keys configured"},
		{"empty list", "[]", "no keys"},
		{"empty comma list", " , ,", "no keys"},
		{"empty tokens", `{"tokens": null}`, `no "tokens" list`},
		{"other top-level field", `{"keys": []}`, `unknown top-level field "keys"`},
		{"not a list", "tokens: s3cr3t\n", "want a list of keys"},
		{"item not an object", `[["s3cr3t"]]`, "key #1 (line 1): want an object"},
		{"duplicate id", `[{"id": "a", "server_secret": "s3cr3t1"}, {"id": "a", "server_secret": "s3cr3t2"}]`, `duplicate key id "a"`},
		{"shared secret", `[{"id": "a", "server_secret": "s3cr3t"}, {"id": "b", "client_secret": "s3cr3t"}]`, `keys "a" and "b" share a secret`},
		{"shared secret, clear and hashed", `[{"id": "a", "server_secret": "s3cr3t"}, {"id": "b", "server_secret": "` + HashSecret(secret) + `"}]`, `keys "a" and "b" share a secret`},
		{"listed twice", "s3cr3t,s3cr3t", "is listed twice"},
		{"bad hash", `[{"id": "a", "server_secret": "sha256:s3cr3t"}]`, `key "a": a secret starting with "sha256:" must go on with 64 hex digits`},
		{"misspelt field", `[{"id": "a", "server_secret": "s3cr3t", "orgins": ["x.com"]}]`, `key "a" (line 1): unknown field "orgins"`},
		{"secret as a field name", "- s3cr3t-0000: x\n", "key #1 (line 1): unknown field (name not shown)"},
		{"field twice", "- server_secret: s3cr3t\n  server_secret: s3cr3t\n", `key #1: field "server_secret" given twice`},
		{"no secret", `[{"id": "a", "origins": ["x.com"]}]`, `key "a": no server_secret or client_secret`},
		{"secret not a string", `[{"id": "a", "server_secret": {"s3cr3t": 1}}]`, "server_secret: want a string or a list of strings"},
		{"bad duration", `[{"id": "a", "server_secret": "x", "max_ttl": "s3cr3t"}]`, `max_ttl: want a duration like "30m" or whole seconds`},
		{"negative duration", `[{"id": "a", "server_secret": "x", "max_ttl": "-1m"}]`, "max_ttl: must not be negative"},
		{"default above max", `[{"id": "a", "server_secret": "x", "max_ttl": "1m", "default_ttl": "2m"}]`, `key "a": default_ttl 2m0s is above max_ttl 1m0s`},
		{"bad bool", `[{"id": "a", "server_secret": "x", "disabled": "s3cr3t"}]`, "disabled: want true or false"},
		{"bad id", `[{"id": "a b", "server_secret": "x"}]`, "id: ids are at most 128 characters"},
		{"bad origin", `[{"id": "a", "server_secret": "x", "origins": ["a*b.com"]}]`, `key "a": origin "a*b.com": '*' may appear only`},
		{"YAML syntax with an alias", "- *s3cr3t\n", "yaml: unknown anchor"},
		{"JSON syntax", `[{"id": "a", "server_secret": "s3cr3t"`, "yaml: "},
		{"bad URL", "https://", "key server URL does not parse"},
		{"file URL without path", "file://", "without a path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(context.Background(), c.spec, Options{Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q reveals the secret", err)
			}
		})
	}
}

func TestHashSecret(t *testing.T) {
	// SHA-256("abc") from FIPS 180-2, appendix B.1.
	const want = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := HashSecret("abc"); got != want {
		t.Errorf("HashSecret(abc) = %s, want %s", got, want)
	}
	spec := `[{"id": "h", "server_secret": "` + HashSecret("abc") + `", "client_secret": "SHA256:` +
		strings.ToUpper(HashSecret("web")[len("sha256:"):]) + `"}]`
	r := newRegistry(t, spec, Options{})
	if k, _, err := r.Authenticate("abc", ""); err != nil || k.ID != "h" {
		t.Errorf("Authenticate(clear server secret) = %q, %v", k.ID, err)
	}
	if k, _, err := r.Authenticate("web", "https://x.example"); err != nil || k.ID != "h" {
		t.Errorf("Authenticate(clear client secret) = %q, %v", k.ID, err)
	}
	if _, _, err := r.Authenticate(HashSecret("abc"), ""); err != ErrUnknownKey {
		t.Errorf("the stored hash itself authenticated: %v", err)
	}
}

func TestDerivedIDStable(t *testing.T) {
	// Pinned: ids end up in tokens and partners' dashboards, so changing the
	// derivation is a breaking change. The same value from a shell:
	//   printf s3cr3t | sha256sum | cut -c1-64 | xxd -r -p | sha256sum | cut -c1-12
	if got, want := idOf("s3cr3t"), "k_efb73623a805"; got != want {
		t.Errorf("derived id of s3cr3t = %s, want %s", got, want)
	}
	specs := []string{
		`s3cr3t`,
		`[{"server_secret": "s3cr3t"}]`,
		`[{"client_secret": "` + HashSecret("s3cr3t") + `"}]`,
		`[{"server_secret": ["s3cr3t", "s3cr3t"]}]`,
	}
	for _, spec := range specs {
		if ks := newRegistry(t, spec, Options{}).Keys(); ks[0].ID != idOf("s3cr3t") {
			t.Errorf("%s: id %s, want %s", spec, ks[0].ID, idOf("s3cr3t"))
		}
	}
	a := newRegistry(t, `[{"server_secret": ["x", "y"], "client_secret": "z"}]`, Options{}).Keys()[0].ID
	b := newRegistry(t, `[{"server_secret": "z", "client_secret": ["y", "x"]}]`, Options{}).Keys()[0].ID
	if a != b || a != idOf("x", "y", "z") {
		t.Errorf("ids %s and %s differ; the id depends on the set of secrets only", a, b)
	}
}
