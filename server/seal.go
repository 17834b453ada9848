package server

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"

	"github.com/tokensvc/tokensvc/store"
)

// Bundles are sealed with AES-256-GCM under a key derived from the token.
// The store never sees the token, so a copy of the store (a Redis dump, a
// replica, a backup) holds neither tokens nor readable bundles, and there is
// no server-side key to manage or leak.
//
// No (key, nonce) pair is ever used twice: every seal draws a random
// 96-bit nonce from the OS CSPRNG and stores it in front of the
// ciphertext, and a key belongs to one token, which is never issued for
// two mints (see token.go and idempotency.go). A token's key seals at most
// a handful of times (its public and private parts, again on a refresh
// only under a new token), far below GCM's 2^32 random-nonce bound.
//
// A sealed part is: its version, the nonce, the GCM ciphertext and tag,
// the version byte being the GCM additional data. sealV3 seals the part
// coded with bundleDict (sealdict.go: about 60 bytes fewer for an editor
// bundle, for Redis memory); sealV2 seals it as it is, for a part that
// holds a byte the coding uses (no valid bundle does). Both are opened;
// records written before sealV2 (fixed nonces 0 and 1 under the v1 key,
// no version byte) are still opened, never written, until they expire.
const (
	sealV2 = 2
	sealV3 = 3
)

var errSeal = errors.New("server: a sealed bundle does not open with its token")

func aead(label, token string) cipher.AEAD {
	var buf [64]byte // label and token, on the stack: one hash per verify
	key := sha256.Sum256(append(append(buf[:0], label...), token...))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return gcm
}

const (
	labelV1 = "tokensvc bundle key v1\x00"
	labelV2 = "tokensvc bundle key v2\x00"
)

// seal encrypts the bundle parts of rec for storage under token.
func seal(token string, rec *store.Record) error {
	a := aead(labelV2, token)
	var err error
	if rec.Bundle, err = sealPart(a, rec.Bundle); err != nil {
		return err
	}
	if len(rec.Private) > 0 {
		rec.Private, err = sealPart(a, rec.Private)
	}
	return err
}

func sealPart(a cipher.AEAD, plain []byte) ([]byte, error) {
	head := 1 + a.NonceSize()
	out := make([]byte, head, head+len(plain)+a.Overhead())
	out[0] = sealV3
	if _, err := rand.Read(out[1:head]); err != nil {
		return nil, err
	}
	coded, ok := dictEncode(out, plain)
	if !ok {
		out[0] = sealV2
		return a.Seal(out, out[1:head], plain, out[:1]), nil
	}
	// Sealed in place: the ciphertext takes the coded bytes' room.
	return a.Seal(out[:head], out[1:head], coded[head:], []byte{sealV3}), nil
}

// unseal decrypts what seal encrypted. A failure means a corrupt or
// tampered record.
func unseal(token string, rec *store.Record) error {
	a := aead(labelV2, token)
	var v1 cipher.AEAD // only for records sealed before sealV2
	open := func(part []byte, v1Nonce byte) ([]byte, error) {
		if n := a.NonceSize(); len(part) >= 1+n+a.Overhead() && (part[0] == sealV2 || part[0] == sealV3) {
			if plain, err := a.Open(nil, part[1:1+n], part[1+n:], part[:1]); err == nil {
				if part[0] == sealV3 {
					return dictDecode(plain)
				}
				return plain, nil
			}
		}
		if v1 == nil {
			v1 = aead(labelV1, token)
		}
		nonce := make([]byte, v1.NonceSize())
		nonce[len(nonce)-1] = v1Nonce
		return v1.Open(nil, nonce, part, nil)
	}
	pub, err := open(rec.Bundle, 0)
	if err != nil {
		return errSeal
	}
	rec.Bundle = pub
	if len(rec.Private) > 0 {
		if rec.Private, err = open(rec.Private, 1); err != nil {
			return errSeal
		}
	}
	return nil
}
