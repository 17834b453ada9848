package main

import (
	"os"
	"strings"
	"testing"
)

const (
	settingsBegin = "<!-- settings:begin (generated from cmd/tokensvc/config.go by TestREADMESettingsTable; UPDATE_README=1 rewrites it) -->\n"
	settingsEnd   = "<!-- settings:end -->"
)

// The README's configuration table is the code's list of settings. Run
// `UPDATE_README=1 go test -run READMESettings ./cmd/tokensvc` after
// changing a setting.
func TestREADMESettingsTable(t *testing.T) {
	syncSection(t, "../../README.md", settingsBegin, settingsEnd, settingsMarkdown(), "UPDATE_README",
		"run UPDATE_README=1 go test -run READMESettings ./cmd/tokensvc")
}

// syncSection checks that the part of the file at path between the markers
// begin and end is want; with the environment variable update set to 1 it
// rewrites it instead. fix tells the reader how to do that.
func syncSection(t *testing.T, path, begin, end, want, update, fix string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no markers %q … %q", path, begin, end)
	}
	if got := doc[i+len(begin) : j]; got != want {
		if os.Getenv(update) == "1" {
			if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+want+doc[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("%s is stale between %q and %q; %s\nwant:\n%s", path, begin, end, fix, want)
	}
}
