package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/store"
)

// The store holds bundles sealed under their token: neither the public nor
// the private fields are readable without it, and a tampered record is an
// internal error, never someone else's data.
func TestStoredBundlesAreSealed(t *testing.T) {
	var mem *store.Memory
	h := newHarness(t, func(c *Config) { mem = c.Store.(*store.Memory) })
	token := h.mint(t, "?private=auth", `{"auth":"partner-api-key","file":"/plans/secret-project.dwg"}`)
	_, id, _ := parseToken(token)
	rec, err := mem.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"partner-api-key", "secret-project", "auth", "file"} {
		if bytes.Contains(rec.Bundle, []byte(plain)) || bytes.Contains(rec.Private, []byte(plain)) {
			t.Errorf("the store holds %q in clear", plain)
		}
	}
	if res := h.verify(t, token, "x-api-key: "+partnerKey); string(res.body) != `{"file":"/plans/secret-project.dwg","auth":"partner-api-key"}` {
		t.Fatalf("verify: %d %s", res.status, res.body)
	}

	// Flip one bit of a stored bundle: verification fails closed.
	other := h.mint(t, "", `{"a":1}`)
	_, oid, _ := parseToken(other)
	orec, _ := mem.Get(context.Background(), oid)
	orec.Bundle = append([]byte(nil), orec.Bundle...)
	orec.Bundle[0] ^= 1
	if err := unseal(other, &orec); err == nil {
		t.Fatal("a tampered bundle opened")
	}
}

func TestSealRoundTrip(t *testing.T) {
	rec := store.Record{Bundle: []byte(`{"a":1}`), Private: []byte(`{"b":2}`), CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := seal("9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126", &rec); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(rec.Bundle, []byte(`{"a":1}`)) {
		t.Fatal("seal left the bundle in clear")
	}
	wrong := rec
	if err := unseal("9dc4c28a-fbe9-47df-b8b9-dc3d2cf27127", &wrong); err == nil {
		t.Fatal("another token opened the bundle")
	}
	if err := unseal("9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126", &rec); err != nil || string(rec.Bundle) != `{"a":1}` || string(rec.Private) != `{"b":2}` {
		t.Fatalf("unseal: %v %s %s", err, rec.Bundle, rec.Private)
	}
}

// Every seal draws its own nonce, stored with the ciphertext: the same
// token and bundle sealed twice never share a (key, nonce) pair.
func TestSealNeverReusesANonce(t *testing.T) {
	const token = "9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126"
	nonces := map[string]bool{}
	for i := 0; i < 1000; i++ {
		rec := store.Record{Bundle: []byte(`{"a":1}`), Private: []byte(`{"b":2}`)}
		if err := seal(token, &rec); err != nil {
			t.Fatal(err)
		}
		for _, part := range [][]byte{rec.Bundle, rec.Private} {
			if part[0] != sealV3 {
				t.Fatalf("sealed part starts with %d, want version %d", part[0], sealV3)
			}
			n := string(part[1:13])
			if nonces[n] {
				t.Fatalf("nonce %x used twice", n)
			}
			nonces[n] = true
		}
	}
}

// Records sealed before the random nonce (fixed nonces 0 and 1 under the
// v1 key) still open until they expire.
func TestUnsealOpensVersion1(t *testing.T) {
	const token = "9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126"
	a := aead(labelV1, token)
	nonce := make([]byte, 12)
	rec := store.Record{Bundle: a.Seal(nil, nonce, []byte(`{"a":1}`), nil)}
	nonce[11] = 1
	rec.Private = a.Seal(nil, nonce, []byte(`{"b":2}`), nil)
	if err := unseal(token, &rec); err != nil || string(rec.Bundle) != `{"a":1}` || string(rec.Private) != `{"b":2}` {
		t.Fatalf("unseal of a v1 record: %v %s %s", err, rec.Bundle, rec.Private)
	}
}

// Records sealed as sealV2 (before the dictionary) still open, and a part
// that holds a byte the dictionary codes with is sealed as sealV2 still.
func TestUnsealOpensVersion2(t *testing.T) {
	const token = "9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126"
	a := aead(labelV2, token)
	v2 := func(plain string) []byte {
		out := make([]byte, 13)
		out[0] = sealV2
		rand.Read(out[1:])
		return a.Seal(out, out[1:13], []byte(plain), out[:1])
	}
	rec := store.Record{Bundle: v2(`{"userId":"u-1"}`), Private: v2(`{"auth":"k"}`)}
	if err := unseal(token, &rec); err != nil || string(rec.Bundle) != `{"userId":"u-1"}` || string(rec.Private) != `{"auth":"k"}` {
		t.Fatalf("unseal of a v2 record: %v %s %s", err, rec.Bundle, rec.Private)
	}
	odd := store.Record{Bundle: []byte("{\"a\":\"\x01\"}")}
	if err := seal(token, &odd); err != nil || odd.Bundle[0] != sealV2 {
		t.Fatalf("a part holding a code byte: %v, version %d, want %d", err, odd.Bundle[0], sealV2)
	}
	if err := unseal(token, &odd); err != nil || string(odd.Bundle) != "{\"a\":\"\x01\"}" {
		t.Fatalf("unseal: %v %q", err, odd.Bundle)
	}
}

// The version byte is authenticated: a v3 part relabelled v2 (so that its
// coded bytes would be answered as they are) does not open.
func TestSealVersionIsAuthenticated(t *testing.T) {
	const token = "9dc4c28a-fbe9-47df-b8b9-dc3d2cf27126"
	rec := store.Record{Bundle: []byte(`{"userId":"u-1","file":"/drawings/a.dwg"}`)}
	if err := seal(token, &rec); err != nil {
		t.Fatal(err)
	}
	rec.Bundle[0] = sealV2
	if err := unseal(token, &rec); err == nil {
		t.Fatalf("a relabelled part opened: %s", rec.Bundle)
	}
}

// The dictionary shortens editor bundles, by the amount README's memory
// figure rests on, and gives every bundle back byte for byte.
func TestBundleDict(t *testing.T) {
	const bench = `{"auth":"apiKey","userId":"u-0000042","server":"eu-1","file":"/drawings/projects/p-00042/building-a-floor-2-electrical-plan-rev-7-final-approved.dwg"}`
	cases := []struct {
		bundle string
		atMost int // coded length
	}{
		{bench, 93},
		{`{"auth":"apiKey","file":"/drawings/1.dwg","userId":"u-42","server":"eu-1"}`, 30},
		{`{"a":1}`, 7},
		{`{}`, 2},
		{`{"x":"\u0001","y":[true,false,null],"z":"https://e.test/\"}"}`, 60},
	}
	for _, c := range cases {
		coded, ok := dictEncode(nil, []byte(c.bundle))
		if !ok {
			t.Fatalf("%s: not coded", c.bundle)
		}
		if len(coded) > c.atMost {
			t.Errorf("%s: coded to %d bytes, want at most %d", c.bundle, len(coded), c.atMost)
		}
		back, err := dictDecode(coded)
		if err != nil || string(back) != c.bundle {
			t.Errorf("%s: decoded %q, %v", c.bundle, back, err)
		}
	}
	if _, err := dictDecode([]byte{0x00}); err == nil {
		t.Error("code 0 decoded")
	}
	if len(bundleDict) != 31 {
		t.Errorf("bundleDict has %d strings; its codes are 0x01 to 0x1f", len(bundleDict))
	}
}

// Any JSON-valid compact bundle survives the dictionary byte for byte.
func FuzzBundleDict(f *testing.F) {
	for _, s := range []string{`{"auth":"apiKey","userId":"u-1"}`, `{"a":"\"}"}`, `{"":""}`, `{"file":"/drawings/x.dwg","n":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, plain []byte) {
		coded, ok := dictEncode(nil, plain)
		if !ok {
			for _, c := range plain {
				if c < 0x20 {
					return
				}
			}
			t.Fatalf("%q: not coded, though it holds no code byte", plain)
		}
		if len(coded) > len(plain) {
			t.Fatalf("%q: coded longer (%d > %d)", plain, len(coded), len(plain))
		}
		back, err := dictDecode(coded)
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("%q: decoded %q, %v", plain, back, err)
		}
	})
}
