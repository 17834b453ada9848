package server

import (
	"crypto/sha256"

	"github.com/google/uuid"

	"github.com/tokensvc/tokensvc/store"
)

// newToken returns a fresh token, a UUID v4 from the system CSPRNG, and the
// ID its record is stored under.
func newToken() (uuid.UUID, store.ID, error) {
	u, err := uuid.NewRandom()
	if err != nil {
		return u, store.ID{}, err
	}
	return u, tokenID(u.String()), nil
}

// parseToken accepts only what newToken makes: a 36-character UUID v4
// (either case), returned in canonical form with its ID. Anything else
// never reaches the store.
func parseToken(s string) (string, store.ID, bool) {
	if len(s) != 36 {
		return "", store.ID{}, false
	}
	u, err := uuid.Parse(s)
	if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
		return "", store.ID{}, false
	}
	c := u.String()
	return c, tokenID(c), true
}

// tokenID is the first store.IDSize bytes of SHA-256 of the canonical token.
// It names the record and the token in logs, but cannot be turned back into
// the token.
func tokenID(canonical string) store.ID {
	sum := sha256.Sum256([]byte(canonical))
	var id store.ID
	copy(id[:], sum[:])
	return id
}
