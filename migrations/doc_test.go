package migrations

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// The schema in the package documentation names the keys the store
// builds, and the layout this binary writes.
func TestDocMatchesSchema(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{fmt.Sprintf("# Key schema, layout %d", Layout), "//\t" + recordKey + " ", "//\t" + epochKey + " ", "//\t" + markerKey + " ", "//\t" + historyKey + " ", "//\t" + auditKey + " "} {
		if !strings.Contains(doc, want) {
			t.Errorf("doc.go does not say %q", want)
		}
	}
	if s := steps(); s[len(s)-1].version != Layout {
		t.Errorf("the last step is %d, Layout %d", s[len(s)-1].version, Layout)
	}
	for _, s := range steps() {
		if !strings.Contains(doc, fmt.Sprintf("  %d. ", s.version)) {
			t.Errorf("doc.go does not describe layout %d", s.version)
		}
	}
}
