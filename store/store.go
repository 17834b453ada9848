// Package store keeps token records: what a token was minted for, under
// which policy, and until when. It knows nothing of HTTP, Redis or raw
// tokens: callers address records by ID, a hash of the token, so a store
// dump never yields a usable token.
//
// Two implementations pass the same contract suite (package storetest):
// the Redis store (package store/redisstore), for any number of service
// instances, and Memory, here, for one process without Redis. Both use
// this package's records, sentinel errors and checks, so callers that only
// need those (package server) do not depend on a Redis client.
package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them, so test with errors.Is.
var (
	// ErrNotFound means no record has the ID: it never existed or has
	// expired. These cases are deliberately not told apart.
	ErrNotFound = errors.New("store: not found")
	// ErrUsed means the token has had all the uses it was minted for.
	ErrUsed = errors.New("store: token used up")
	// ErrRevoked means the token was revoked before it expired.
	ErrRevoked = errors.New("store: token revoked")
	// ErrExists means a record with the ID, or a marker with the name, is
	// already stored.
	ErrExists = errors.New("store: record exists")
	// ErrUnavailable means the backing store did not answer in time or
	// refused to serve (network failure, timeout, failover in progress).
	// Callers should answer "try again later", never "invalid".
	ErrUnavailable = errors.New("store: unavailable")
	// ErrFull means Redis refused a write for lack of memory (maxmemory
	// reached under the noeviction policy). It is an outage for writes, so
	// errors.Is(err, ErrUnavailable) holds for it too; reads, and uses that
	// write nothing, still work.
	ErrFull error = full{}
)

// full is the type of ErrFull, which is also ErrUnavailable.
type full struct{}

func (full) Error() string { return "store: full" }

// Is makes errors.Is(ErrFull, ErrUnavailable) hold.
func (full) Is(target error) bool { return target == ErrUnavailable }

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

// State is where a record is in its life.
type State uint8

// States of a record. Used and revoked records are tombstones: they keep
// only the state and the minting key's id, until the token would have
// expired, so callers can be told why a token no longer works. A token that
// Take ended reads as Revoked (its tombstone differs only inside the store,
// so that Restore can tell it from a Revoke).
const (
	Live State = iota
	Used
	Revoked
)

func (s State) String() string {
	return [...]string{"live", "used", "revoked"}[s]
}

// MaxTTL is the longest lifetime a record may have.
const MaxTTL = 30 * 24 * time.Hour

// Record is what a token grants, and under which policy.
type Record struct {
	// Bundle is the JSON object of public fields, byte for byte as minted.
	Bundle json.RawMessage
	// Private is a JSON object of the fields only server-side callers may
	// read, or nil.
	Private json.RawMessage
	// KeyID is the id of the partner key that minted the token.
	KeyID string
	// KeyEpoch is the minting key's revocation epoch at mint time, set by
	// the store's Put; the token is revoked once the key's epoch (RevokeKey)
	// has moved past it. A record that continues a session (a refresh's
	// successor) keeps the lower of its predecessor's epoch, given here,
	// and the current one: a key-wide revocation that lands during the
	// refresh ends the successor too.
	KeyEpoch uint64
	// CreatedAt is when the token was minted.
	CreatedAt time.Time
	// ExpiresAt is when the token expires at the latest. It must be after
	// CreatedAt, by at most MaxTTL.
	ExpiresAt time.Time
	// SessionStart is when the first token of a refresh chain was minted;
	// zero means CreatedAt.
	SessionStart time.Time
	// MaxUses is how many successful uses the token allows; 0 is no limit.
	MaxUses uint32
	// Uses is how many uses it has had.
	Uses uint32
	// ReuseGrace lets a token whose uses ran out work a while longer (a
	// page reload right after the last use).
	ReuseGrace time.Duration
	// IdleTTL, if set, expires the token when unused this long; each use
	// pushes the expiry forward, never past ExpiresAt.
	IdleTTL time.Duration
	// State is Live, or Used/Revoked for a tombstone (which keeps only
	// State, KeyID and History).
	State State
	// History keeps the token's history (see Entry) for as long as the
	// record lives, its tombstone included. It is set at Put.
	History bool
}

// TTL is the lifetime of the record from its creation.
func (r Record) TTL() time.Duration { return r.ExpiresAt.Sub(r.CreatedAt) }

// ContinuesSession says the record is a refresh's successor: its session
// started before it did.
func (r Record) ContinuesSession() bool {
	return !r.SessionStart.IsZero() && r.SessionStart.Before(r.CreatedAt)
}

// Session is the start of the refresh chain the record belongs to.
func (r Record) Session() time.Time {
	if r.SessionStart.IsZero() {
		return r.CreatedAt
	}
	return r.SessionStart
}

// UsesLeft is how many uses remain, or -1 when there is no limit.
func (r Record) UsesLeft() int64 {
	if r.MaxUses == 0 {
		return -1
	}
	return int64(r.MaxUses) - int64(r.Uses)
}

// InitialTTL is how long a new record lives when Put writes it: IdleTTL
// when that is set and shorter than TTL, else TTL.
func (r Record) InitialTTL() time.Duration {
	if r.IdleTTL > 0 && r.IdleTTL < r.TTL() {
		return r.IdleTTL
	}
	return r.TTL()
}

// Validate returns why r cannot be written by Put, or nil: Put takes only a
// live record with no uses yet, a lifetime from a millisecond to MaxTTL
// and a session that does not start after it.
func (r Record) Validate() error {
	switch {
	case r.State != Live:
		return errors.New("store: only live records can be written")
	case r.TTL() < time.Millisecond:
		return errors.New("store: record expires before it is created")
	case r.TTL() > MaxTTL:
		return errors.New("store: record lives longer than MaxTTL")
	case r.Uses != 0:
		return errors.New("store: a new record has had no uses")
	case r.SessionStart.After(r.CreatedAt):
		return errors.New("store: session starts after the record")
	}
	return nil
}

// MaxMarkerSize is the most bytes a marker's value may hold.
const MaxMarkerSize = 512

// ValidateMarker returns why PutMarker cannot store value for ttl, or
// nil: value holds at most MaxMarkerSize bytes, and ttl is between a
// millisecond and MaxTTL.
func ValidateMarker(value []byte, ttl time.Duration) error {
	switch {
	case len(value) > MaxMarkerSize:
		return errors.New("store: a marker holds at most MaxMarkerSize bytes")
	case ttl < time.Millisecond:
		return errors.New("store: a marker lives at least a millisecond")
	case ttl > MaxTTL:
		return errors.New("store: a marker lives at most MaxTTL")
	}
	return nil
}

// Result is the outcome for one token of a batch (ConsumeMany, GetMany).
type Result struct {
	Record Record
	Err    error
}
