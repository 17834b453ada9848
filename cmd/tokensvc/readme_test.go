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
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, settingsBegin), strings.Index(readme, settingsEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no settings markers")
	}
	want := settingsMarkdown()
	if got := readme[i+len(settingsBegin) : j]; got != want {
		if os.Getenv("UPDATE_README") == "1" {
			if err := os.WriteFile(path, []byte(readme[:i+len(settingsBegin)]+want+readme[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("README.md's settings table is stale; run UPDATE_README=1 go test -run READMESettings ./cmd/tokensvc\nwant:\n%s", want)
	}
}
