package server

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The single-pass scanner agrees with encoding/json on what is a valid
// object and what its compact form is.
func TestCompactObjectAgreesWithEncodingJSON(t *testing.T) {
	valid := []string{
		`{}`, ` { } `, `{"a":[]}`, `{"a":[[],{}]}`, "{\n\t\"a\" :\r\n 1 }",
		`{"n":[0,-0,1,-1,10,0.5,-0.5e-3,1E+2,1e2,123456789012345678901234567890]}`,
		`{"s":"\u00e9\/\"\\\b\f\n\r\t\uD83D\uDE00","é":"ü漢字🙂"}`,
		`{"t":true,"f":false,"z":null,"o":{"p":{"q":[1,{"r":"s"}]}}}`,
		`{"":""}`, `{"a":1,"a":2}`,
	}
	for _, in := range valid {
		got, err := compactObject([]byte(in))
		var want bytes.Buffer
		if cerr := json.Compact(&want, []byte(in)); cerr != nil {
			t.Fatalf("test input %q is not valid JSON: %v", in, cerr)
		}
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want.Bytes())
		}
	}
	invalid := []string{
		``, ` `, `[]`, `"a"`, `1`, `null`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{a:1}`, `{'a':1}`,
		`{"a":1,}`, `{"a":[1,]}`, `{"a":[1 2]}`, `{,}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`,
		`{"a":-}`, `{"a":1e}`, `{"a":1e+}`, `{"a":tru}`, `{"a":nul}`, `{"a":"\x"}`, `{"a":"\u12"}`,
		`{"a":"\u12g4"}`, "{\"a\":\"\x01\"}", `{"a":"unterminated}`, `{"a":1}x`, `{"a":1}{}`, `{"a":NaN}`,
	}
	for _, in := range invalid {
		if json.Valid([]byte(in)) && len(in) > 0 && in[0] == '{' {
			t.Fatalf("test input %q is valid JSON", in)
		}
		if got, err := compactObject([]byte(in)); err == nil {
			t.Errorf("%q accepted as %q", in, got)
		}
	}
}

// FuzzCompactObjectAcceptsValid: every valid JSON object within the
// limits is accepted (the other direction is FuzzDecodeBundle's).
func FuzzCompactObjectAcceptsValid(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,2.5e3,"x\u00e9"]}`, `{"a":{"b":null}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var v map[string]any
		if json.Unmarshal([]byte(in), &v) != nil || v == nil || len(in) > 4096 {
			return
		}
		if _, err := compactObject([]byte(in)); err != nil && err.Message == "the body is not valid JSON" {
			t.Fatalf("valid object %q refused: %v", in, err)
		}
	})
}
