package server

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tokensvc/tokensvc/store"
)

// uuidV4 is what parseToken must accept, written independently of the
// uuid package: the canonical 36-character form, version 4, RFC 4122
// variant, in either case.
var uuidV4 = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$`)

// FuzzParseToken: whatever a client sends as a token, parseToken does not
// panic, accepts exactly the UUID v4 strings, and names an accepted token
// by the tokenID of its lower-case form, the form newToken hashes, so
// case does not change which record a token reads.
//
//	go test -run '^$' -fuzz '^FuzzParseToken$' -fuzztime 60s ./server
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		"9dc4c28a-3f6b-4c1e-9a0b-1d2e3f405162",
		"9DC4C28A-3F6B-4C1E-9A0B-1D2E3F405162",
		"00000000-0000-4000-8000-000000000000",
		"00000000-0000-1000-8000-000000000000", // version 1
		"00000000-0000-4000-c000-000000000000", // Microsoft variant
		"{9dc4c28a-3f6b-4c1e-9a0b-1d2e3f405162}",
		"urn:uuid:9dc4c28a-3f6b-4c1e-9a0b-1d2e3f405162",
		"9dc4c28a3f6b4c1e9a0b1d2e3f405162",
		"9dc4c28a-3f6b-4c1e-9a0b-1d2e3f40516g",
		"9dc4c28a_3f6b-4c1e-9a0b-1d2e3f405162",
		" 9dc4c28a-3f6b-4c1e-9a0b-1d2e3f40516",
		"9dc4c28a-3f6b-4c1e-9a0b-1d2e3f4051\u00e9",
		"",
		"nope",
	} {
		f.Add(s)
	}
	for range 4 {
		tok, _, err := newToken()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok.String())
	}
	f.Fuzz(func(t *testing.T, s string) {
		canonical, id, ok := parseToken(s)
		if want := uuidV4.MatchString(s); ok != want {
			t.Fatalf("parseToken(%q) accepted = %v, want %v", s, ok, want)
		}
		switch {
		case ok && canonical != strings.ToLower(s):
			t.Fatalf("parseToken(%q) canonical form = %q", s, canonical)
		case ok && id != tokenID(strings.ToLower(s)):
			t.Fatalf("parseToken(%q) = %s, want tokenID of the lower-case form %s", s, id, tokenID(strings.ToLower(s)))
		case !ok && id != (store.ID{}):
			t.Fatalf("parseToken(%q) refused it but returned the ID %s", s, id)
		}
	})
}
