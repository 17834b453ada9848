package server

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokensvc/tokensvc/api"
)

// The error codes live in openapi.yaml; codes gives each its status, and
// README's errors table says the same, code for code.
func TestErrorCodesAgree(t *testing.T) {
	var spec struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `yaml:"enum"`
				} `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(api.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	enum := spec.Components.Schemas["Error"].Properties["error"].Enum
	if len(enum) == 0 {
		t.Fatal("openapi.yaml's Error schema lists no codes")
	}
	inSpec := map[api.ErrorError]bool{}
	for _, c := range enum {
		inSpec[api.ErrorError(c)] = true
		if _, ok := codes[api.ErrorError(c)]; !ok {
			t.Errorf("code %q of openapi.yaml has no status in codes", c)
		}
	}
	for c := range codes {
		if !inSpec[c] {
			t.Errorf("code %q of codes is not in openapi.yaml", c)
		}
	}

	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "### Errors")
	if i < 0 {
		t.Fatal("README.md has no ### Errors section")
	}
	section := readme[i:]
	section = section[:strings.Index(section[len("### Errors"):], "\n#")+len("### Errors")]
	row := regexp.MustCompile(`(?m)^\| ([0-9, ]+) \| ([^|]+) \|`)
	backticked := regexp.MustCompile("`([a-z_]+)`")
	documented := map[api.ErrorError]int{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		statuses := strings.Split(m[1], ",")
		names := backticked.FindAllStringSubmatch(m[2], -1)
		for j, n := range names {
			status, _ := strconv.Atoi(strings.TrimSpace(statuses[min(j, len(statuses)-1)]))
			documented[api.ErrorError(n[1])] = status
		}
	}
	for c, info := range codes {
		switch got, ok := documented[c]; {
		case !ok:
			t.Errorf("README's errors table does not list %q", c)
		case got != info.status:
			t.Errorf("README says %q is %d, the code %d", c, got, info.status)
		}
	}
	for c := range documented {
		if _, ok := codes[c]; !ok {
			t.Errorf("README's errors table lists %q, which is no code", c)
		}
	}
}
