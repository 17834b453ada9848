package keys

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type originCase struct {
	Pattern, Origin string
	Match           bool
}

// originTable is the table of the package documentation, row for row;
// TestOriginTableIsDocumented keeps the two equal.
var originTable = []originCase{
	{"*", "https://anything.example", true},
	{"*", "null", true},
	{"abc*", "https://abc.com", true},
	{"abc*", "https://abcd.com", true},
	{"abc*", "https://xabc.com", false},
	{"*abc.com", "https://abc.com", true},
	{"*abc.com", "https://xyzabc.com", true},
	{"*abc.com", "https://a.abc.com", true},
	{"*abc.com", "https://abc.com.evil.io", false},
	{"*.yourdomain.com", "https://a.yourdomain.com", true},
	{"*.yourdomain.com", "https://a.b.yourdomain.com", true},
	{"*.yourdomain.com", "https://yourdomain.com", false},
	{"*.yourdomain.com", "https://evilyourdomain.com", false},
	{"efg.com", "https://efg.com", true},
	{"efg.com", "http://efg.com:8080", true},
	{"efg.com", "https://www.efg.com", false},
	{"efg.com", "https://efg.com.evil.io", false},
	{"https://efg.com", "http://efg.com", true},
	{"EFG.com", "https://efg.COM", true},
	{"efg.com:8443", "https://efg.com:8443", true},
	{"efg.com:8443", "https://efg.com", false},
	{"efg.com:443", "https://efg.com", true},
	{"*.yourdomain.com:8443", "https://a.yourdomain.com:8443", true},
	{"*.yourdomain.com:8443", "https://a.yourdomain.com", false},
	{"localhost", "http://localhost:3000", true},
	{"[::1]:8080", "http://[::1]:8080", true},
	{"efg.com", "null", false},
	{"abc*", "null", false},
	{"efg.com", "https://efg.com/path", false},
}

func TestMatchOrigin(t *testing.T) {
	for _, c := range originTable {
		if got := MatchOrigin(c.Pattern, c.Origin); got != c.Match {
			t.Errorf("MatchOrigin(%q, %q) = %v, want %v", c.Pattern, c.Origin, got, c.Match)
		}
	}
}

// TestOriginTableIsDocumented reads the table out of doc.go, so the
// documentation (and the README that copies it) cannot drift from the code.
func TestOriginTableIsDocumented(t *testing.T) {
	f, err := os.Open("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var doc []originCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "//\t|")
		if !ok || strings.HasPrefix(line, "-") || strings.HasPrefix(line, " pattern ") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) != 4 {
			t.Fatalf("doc.go table row %q: want 3 cells", line)
		}
		doc = append(doc, originCase{strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2]) == "yes"})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(originTable, doc); diff != "" {
		t.Errorf("doc.go origin table differs from originTable (-test +doc):\n%s", diff)
	}
}

func TestMatchOriginMore(t *testing.T) {
	cases := []struct {
		name            string
		pattern, origin string
		want            bool
	}{
		{"unparsable origin matches *", "*", "not an origin", true},
		{"unparsable origin", "efg.com", "https://efg com", false},
		{"empty origin", "efg.com", "", false},
		{"empty origin and *", "*", "", true},
		{"wildcard scheme", "https://*", "null", true},
		{"any host on a port", "*:3000", "http://x.test:3000", true},
		{"any host on a port, other port", "*:3000", "http://x.test:4000", false},
		{"any host on a port, null", "*:3000", "null", false},
		{"default http port", "efg.com:80", "http://efg.com", true},
		{"default port of another scheme", "efg.com:80", "https://efg.com", false},
		{"leading zeros in port", "efg.com:0443", "https://efg.com:443", true},
		{"trailing slash in pattern", "https://efg.com/", "https://efg.com", true},
		{"surrounding space", "  efg.com ", " https://efg.com ", true},
		{"invalid: star in the middle", "a*b.com", "https://axb.com", false},
		{"invalid: two stars", "*abc*", "https://abc.com", false},
		{"invalid: null pattern", "null", "null", false},
		{"invalid: bare *.", "*.", "https://a.", false},
		{"invalid: bad port", "efg.com:99999", "https://efg.com:99999", false},
		{"invalid: empty", "", "https://efg.com", false},
		{"non-ASCII origin", "k.com", "https://\u212a.com", false},
		{"IPv6 without port", "[::1]", "http://[::1]:5173", true},
		{"subdomain pattern needs a label", "*.b.com", "https://.b.com", false},
		{"subdomain pattern at a port-less boundary", "*.b.com", "https://a.b.com:8080", true},
		{"prefix keeps to the host", "localhost*", "http://localhost:3000", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := MatchOrigin(c.pattern, c.origin); got != c.want {
				t.Errorf("MatchOrigin(%q, %q) = %v, want %v", c.pattern, c.origin, got, c.want)
			}
		})
	}
}

func FuzzMatchOrigin(f *testing.F) {
	for _, c := range originTable {
		f.Add(c.Pattern, c.Origin)
	}
	f.Add("[::1", "https://[::1")
	f.Add("a*b", "https://:443")
	f.Add("*.", "https://a.:0")
	f.Fuzz(func(t *testing.T, pattern, origin string) {
		MatchOrigin(pattern, origin) // must not panic
		if !MatchOrigin("*", origin) {
			t.Errorf("* does not match %q", origin)
		}
		if p, err := compilePattern(pattern); err == nil && p.kind == exactHost && !MatchOrigin(pattern, pattern) {
			t.Errorf("exact pattern %q does not match itself", pattern)
		}
	})
}
