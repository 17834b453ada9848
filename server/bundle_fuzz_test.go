package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tokensvc/tokensvc/api"
)

// FuzzDecodeBundle feeds arbitrary bodies, as JSON or as a form, to the
// /generate body decoder. Whatever the input: no panic; a refusal is an
// *Error with code invalid_body (a 400, never a 500); an acceptance is one
// compact JSON object within the shape limits that says what the input
// said (the JSON text compacted, or the form's fields as strings).
//
// The seeds are below and in testdata/fuzz/FuzzDecodeBundle; plain
// `go test` runs them. To search for more:
//
//	go test -run '^$' -fuzz '^FuzzDecodeBundle$' -fuzztime 60s ./server
func FuzzDecodeBundle(f *testing.F) {
	for _, s := range []struct {
		form bool
		body string
	}{
		{false, `{"auth":"apiKey","file":"/drawings/1.dwg","userId":"u-42","server":"eu-1"}`},
		{false, `{}`},
		{false, ` { "a" : [ 1 , 2.50e3 , -0 , true , null , {"b":{}} ] } `},
		{false, `{"n":12345678901234567890123456789}`},
		{false, `{"a":"\u00e9\ud83d\ude00\"\\\/"}`},
		{false, `{"a":1}{"b":2}`},
		{false, `{"a":1,}`},
		{false, `[1,2]`},
		{false, `"x"`},
		{false, ``},
		{false, `{"a":1`},
		{false, `{"a":"` + "\xff" + `"}`},
		{false, strings.Repeat(`{"a":`, 32) + `1` + strings.Repeat(`}`, 32)},
		{false, strings.Repeat(`{"a":`, 33) + `1` + strings.Repeat(`}`, 33)},
		{false, `{"` + strings.Repeat("k", 257) + `":1}`},
		{true, `userId=u-42&file=%2Fdrawings%2F1.dwg`},
		{true, ``},
		{true, `a=1&a=2`},
		{true, `a=%ff`},
		{true, `a=%zz`},
		{true, `a;b=1`},
		{true, `%3Cscript%3E=%26%E2%80%A8`},
		{true, `=&x`},
	} {
		f.Add(s.form, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, form bool, body []byte) {
		media := mediaJSON
		if form {
			media = mediaForm
		}
		out, err := decodeBundle(media, body)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || e.Code != api.ErrorErrorInvalidBody {
				t.Fatalf("decodeBundle(%s, %q) = %#v, want an *Error with code invalid_body", media, body, err)
			}
			if out != nil {
				t.Fatalf("decodeBundle(%s, %q) returned %q with its error", media, body, out)
			}
			return
		}
		checkBundle(t, out)
		if form {
			checkFormBundle(t, body, out)
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, body); err != nil {
			t.Fatalf("decodeBundle accepted %q, which is not JSON: %v", body, err)
		}
		if !bytes.Equal(out, want.Bytes()) {
			t.Fatalf("decodeBundle(%q) = %q, want the compacted input %q", body, out, want.Bytes())
		}
	})
}

// checkBundle fails t unless b is one compact JSON object within the shape
// limits a bundle must meet.
func checkBundle(t *testing.T, b []byte) {
	t.Helper()
	if !utf8.Valid(b) || !json.Valid(b) || len(b) == 0 || b[0] != '{' {
		t.Fatalf("accepted bundle %q is not a valid JSON object", b)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil || !bytes.Equal(compact.Bytes(), b) {
		t.Fatalf("accepted bundle %q is not compact", b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	// open holds, per open container, whether it is an object and whether
	// its next string is a member name.
	type level struct{ object, name bool }
	var open []level
	members := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("accepted bundle %q: %v", b, err)
		}
		name := len(open) > 0 && open[len(open)-1].object && open[len(open)-1].name
		if len(open) > 0 && open[len(open)-1].object {
			open[len(open)-1].name = !name // names and values alternate
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(open) == maxDepth {
					t.Fatalf("accepted bundle nests deeper than %d: %q", maxDepth, b)
				}
				open = append(open, level{object: v == '{', name: v == '{'})
			default:
				open = open[:len(open)-1]
				if len(open) > 0 && open[len(open)-1].object {
					open[len(open)-1].name = true
				}
			}
		case string:
			switch {
			case name && len(v) > maxNameBytes:
				t.Fatalf("accepted bundle has a %d-byte field name", len(v))
			case !name && len(v) > maxStringBytes:
				t.Fatalf("accepted bundle has a %d-byte string", len(v))
			}
			if name {
				members++
			}
		}
	}
	if members > maxMembers {
		t.Fatalf("accepted bundle has %d fields", members)
	}
}

// checkFormBundle fails t unless bundle holds exactly the form's fields,
// each given once, as strings.
func checkFormBundle(t *testing.T, body, bundle []byte) {
	t.Helper()
	form, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatalf("accepted form %q does not parse: %v", body, err)
	}
	var got map[string]string
	if err := json.Unmarshal(bundle, &got); err != nil {
		t.Fatalf("form bundle %q is not an object of strings: %v", bundle, err)
	}
	if len(got) != len(form) {
		t.Fatalf("form %q has %d fields, bundle %q has %d", body, len(form), bundle, len(got))
	}
	for name, vals := range form {
		if len(vals) != 1 || got[name] != vals[0] {
			t.Fatalf("form field %q = %q, bundle says %q", name, vals, got[name])
		}
	}
}
