// Package store keeps token records: what a token was minted for and until
// when. It knows nothing of HTTP or raw tokens: callers address records by
// ID, a hash of the token, so a store dump never yields a usable token.
//
// Two implementations pass the same contract suite (package storetest):
// Redis, for any number of service instances, and Memory, for one process
// without Redis.
package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them, so test with errors.Is.
var (
	// ErrNotFound means no live record has the ID: it never existed, has
	// expired or was deleted. These cases are deliberately not told apart.
	ErrNotFound = errors.New("store: not found")
	// ErrExists means a record with the ID is already stored.
	ErrExists = errors.New("store: record exists")
	// ErrUnavailable means the backing store did not answer in time or
	// refused to serve (network failure, timeout, failover in progress).
	// Callers should answer "try again later", never "invalid".
	ErrUnavailable = errors.New("store: unavailable")
)

// IDSize is the length of an ID in bytes.
const IDSize = 16

// ID names a record: the first IDSize bytes of the SHA-256 of its token.
type ID [IDSize]byte

// String returns the ID in lower-case hex, the form shown to operators.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID reads the hex form produced by String.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, errors.New("store: an ID is 32 hex characters")
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, errors.New("store: an ID is 32 hex characters")
	}
	return id, nil
}

// Record is what a token grants.
type Record struct {
	// Bundle is the JSON object the token was minted for, byte for byte.
	Bundle json.RawMessage
	// KeyID is the id of the partner key that minted the token.
	KeyID string
	// CreatedAt is when the token was minted.
	CreatedAt time.Time
	// ExpiresAt is when the record disappears. It must be after CreatedAt.
	ExpiresAt time.Time
}

// TTL is the lifetime of the record from its creation.
func (r Record) TTL() time.Duration { return r.ExpiresAt.Sub(r.CreatedAt) }

func (r Record) validate() error {
	if r.TTL() <= 0 {
		return errors.New("store: record expires before it is created")
	}
	return nil
}
