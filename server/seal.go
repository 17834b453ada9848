package server

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"

	"github.com/tokensvc/tokensvc/store"
)

// Bundles are sealed with AES-256-GCM under a key derived from the token.
// The store never sees the token, so a copy of the store (a Redis dump, a
// replica, a backup) holds neither tokens nor readable bundles, and there is
// no server-side key to manage or leak. Each token has its own key, so the
// nonces can be fixed: 0 for the public part, 1 for the private part.
var (
	nonceBundle  = make([]byte, 12)
	noncePrivate = append(make([]byte, 11), 1)
	errSeal      = errors.New("server: a sealed bundle does not open with its token")
)

func aead(token string) cipher.AEAD {
	key := sha256.Sum256([]byte("tokensvc bundle key v1\x00" + token))
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

// seal encrypts the bundle parts of rec for storage under token.
func seal(token string, rec *store.Record) {
	a := aead(token)
	rec.Bundle = a.Seal(nil, nonceBundle, rec.Bundle, nil)
	if len(rec.Private) > 0 {
		rec.Private = a.Seal(nil, noncePrivate, rec.Private, nil)
	}
}

// unseal decrypts what seal encrypted. A failure means a corrupt or
// tampered record.
func unseal(token string, rec *store.Record) error {
	a := aead(token)
	pub, err := a.Open(nil, nonceBundle, rec.Bundle, nil)
	if err != nil {
		return errSeal
	}
	rec.Bundle = pub
	if len(rec.Private) > 0 {
		if rec.Private, err = a.Open(nil, noncePrivate, rec.Private, nil); err != nil {
			return errSeal
		}
	}
	return nil
}
