package store

import (
	"errors"
	"time"
)

// A token's history is the list of what happened to it (Record.History):
// its mint, each use with its time and the caller's note, each use the
// store refused because the token was used up or revoked, its revocation,
// and what callers add with Annotate. It keeps the newest HistorySize
// entries and lives exactly as long as the record, tombstone included: it
// is written by the same atomic step as the change it tells of (no extra
// round trip on Redis, where it shares the record's hash slot), and it is
// gone when the record is.

// HistorySize is the most entries a history keeps: the newest.
const HistorySize = 32

// MaxNoteSize is the most bytes of a note, what a caller says a call was
// for. The store keeps notes as they are, without reading them.
const MaxNoteSize = 64

// Entry is one entry of a token's history.
type Entry struct {
	// At is when it happened, to the millisecond: the record's CreatedAt
	// for the mint, the now of the call for the others.
	At time.Time
	// Note is the caller's note of the call.
	Note string
	// Refused is ErrUsed or ErrRevoked when the store refused a use because
	// the token was used up or revoked (its epoch moved on included); nil
	// when the call went through, and for Annotate's entries.
	Refused error
}

// Note is an entry a caller adds to the history of the token ID on its
// own (Annotate): a refusal it decided, or an event the store did not see.
type Note struct {
	ID   ID
	Text string
}

// ValidateNote returns why a note cannot be kept, or nil.
func ValidateNote(note string) error {
	if len(note) > MaxNoteSize {
		return errors.New("store: a note holds at most MaxNoteSize bytes")
	}
	return nil
}
