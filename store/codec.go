package store

import (
	"encoding/binary"
	"errors"
	"time"
)

// The Redis value of a record is a compact binary envelope rather than JSON,
// so the bundle bytes are stored and returned without being decoded:
//
//	version (1 byte, = 1)
//	created_at  uvarint, Unix milliseconds
//	expires_at  uvarint, Unix milliseconds
//	key id      uvarint length + bytes
//	bundle      the rest
const codecVersion = 1

var errCorrupt = errors.New("store: corrupt record")

func encodeRecord(r Record) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(r.KeyID)+len(r.Bundle))
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(r.CreatedAt.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(r.ExpiresAt.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(len(r.KeyID)))
	b = append(b, r.KeyID...)
	return append(b, r.Bundle...)
}

func decodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) == 0 || b[0] != codecVersion {
		return r, errCorrupt
	}
	b = b[1:]
	var fields [3]uint64
	for i := range fields {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return r, errCorrupt
		}
		fields[i], b = v, b[n:]
	}
	if fields[2] > uint64(len(b)) {
		return r, errCorrupt
	}
	r.CreatedAt = time.UnixMilli(int64(fields[0]))
	r.ExpiresAt = time.UnixMilli(int64(fields[1]))
	r.KeyID = string(b[:fields[2]])
	r.Bundle = b[fields[2]:]
	return r, nil
}
