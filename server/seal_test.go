package server

import (
	"bytes"
	"context"
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
			if part[0] != sealV2 {
				t.Fatalf("sealed part starts with %d, want version %d", part[0], sealV2)
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
