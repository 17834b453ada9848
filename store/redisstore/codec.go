package redisstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/tokensvc/tokensvc/store"
)

// The value of a record is a compact binary envelope, read by Go and by the
// Lua scripts in scripts.go, so the bundle is stored and returned without
// being decoded. Offsets are 0-based:
//
//	0   version (3)
//	1   state: 0 live, 1 used, 2 revoked, 3 taken (the tombstone Take
//	    leaves, which only Restore undoes; every read reports it as
//	    revoked, and Revoke turns it into 2)
//	2   flags: fUses, fGrace, fIdle, fPrivate, fSession, fHistory (a
//	    tombstone keeps fHistory alone)
//	tombstones (state != 0) end with: uvarint len + key id
//	3..6 the minting key's epoch (uint32 BE), written by the put script
//	if fUses: 7..10 uses so far (uint32 BE), 11..14 when uses ran out, in
//	          ms after created_at plus one (uint32 BE, 0 = not yet); these
//	          two are rewritten in place with SETRANGE, which keeps the TTL
//	uvarint created_at (Unix ms), uvarint ttl (ms)
//	if fUses: uvarint max uses; if fGrace: uvarint grace ms;
//	if fIdle: uvarint idle ms; if fSession: uvarint ms from session start to
//	created_at
//	uvarint len + key id
//	if fPrivate: uvarint len + private JSON object
//	the rest: the public JSON object
const (
	codecVersion = 3

	fUses    = 1
	fGrace   = 2
	fIdle    = 4
	fPrivate = 8
	fSession = 16
	fHistory = 32 // the record keeps a history: <prefix>{g}h:<id>
)

// stateTaken is the envelope state of a taken tombstone. It is no
// store.State: callers see a revoked token.
const stateTaken = 3

// usesHeader is where the varints start in a record with a use limit.
const usesHeader = 15

var errCorrupt = errors.New("store: corrupt record")

func encodeRecord(r store.Record) []byte {
	var flags byte
	set := func(f byte, on bool) {
		if on {
			flags |= f
		}
	}
	set(fUses, r.MaxUses > 0)
	set(fGrace, r.ReuseGrace > 0)
	set(fIdle, r.IdleTTL > 0)
	set(fPrivate, len(r.Private) > 0)
	set(fSession, !r.SessionStart.IsZero() && r.SessionStart.Before(r.CreatedAt))
	set(fHistory, r.History)

	b := make([]byte, 3, usesHeader+8*binary.MaxVarintLen64+len(r.KeyID)+len(r.Private)+len(r.Bundle))
	b[0], b[1], b[2] = codecVersion, byte(store.Live), flags
	b = binary.BigEndian.AppendUint32(b, uint32(r.KeyEpoch))
	if flags&fUses != 0 {
		b = binary.BigEndian.AppendUint32(b, r.Uses)
		b = binary.BigEndian.AppendUint32(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(r.CreatedAt.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(r.TTL().Milliseconds()))
	if flags&fUses != 0 {
		b = binary.AppendUvarint(b, uint64(r.MaxUses))
	}
	if flags&fGrace != 0 {
		b = binary.AppendUvarint(b, uint64(r.ReuseGrace.Milliseconds()))
	}
	if flags&fIdle != 0 {
		b = binary.AppendUvarint(b, uint64(r.IdleTTL.Milliseconds()))
	}
	if flags&fSession != 0 {
		b = binary.AppendUvarint(b, uint64(r.CreatedAt.Sub(r.SessionStart).Milliseconds()))
	}
	b = appendBytes(b, []byte(r.KeyID))
	if flags&fPrivate != 0 {
		b = appendBytes(b, r.Private)
	}
	return append(b, r.Bundle...)
}

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// decoder reads the envelope front to back; the first failure sticks.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func ms(v uint64) time.Duration { return time.Duration(v) * time.Millisecond }

func decodeRecord(b []byte) (store.Record, error) {
	var r store.Record
	if len(b) < 3 || b[0] != codecVersion || b[1] > stateTaken {
		return r, errCorrupt
	}
	r.State = store.State(min(b[1], byte(store.Revoked)))
	flags := b[2]
	r.History = flags&fHistory != 0
	d := decoder{b: b[3:]}
	if r.State != store.Live {
		r.KeyID = string(d.bytes())
		if d.bad {
			return store.Record{}, errCorrupt
		}
		return r, nil
	}
	if len(d.b) < 4 {
		return r, errCorrupt
	}
	r.KeyEpoch = uint64(binary.BigEndian.Uint32(d.b))
	d.b = d.b[4:]
	if flags&fUses != 0 {
		if len(d.b) < 8 {
			return r, errCorrupt
		}
		r.Uses = binary.BigEndian.Uint32(d.b) // the 4 bytes after it are the scripts'
		d.b = d.b[8:]
	}
	r.CreatedAt = time.UnixMilli(int64(d.uvarint()))
	r.ExpiresAt = r.CreatedAt.Add(ms(d.uvarint()))
	if flags&fUses != 0 {
		r.MaxUses = uint32(d.uvarint())
	}
	if flags&fGrace != 0 {
		r.ReuseGrace = ms(d.uvarint())
	}
	if flags&fIdle != 0 {
		r.IdleTTL = ms(d.uvarint())
	}
	if flags&fSession != 0 {
		r.SessionStart = r.CreatedAt.Add(-ms(d.uvarint()))
	}
	r.KeyID = string(d.bytes())
	if flags&fPrivate != 0 {
		r.Private = d.bytes()
	}
	if d.bad {
		return store.Record{}, errCorrupt
	}
	r.Bundle = d.b
	return r, nil
}
