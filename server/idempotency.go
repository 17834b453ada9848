package server

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"github.com/google/uuid"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

// An Idempotency-Key is remembered by a marker in the store, written after
// the token's record: it names the token that the first request minted (a
// fresh random token like any other) and a digest of that request. Its
// name and its sealing key are HMACs of the partner key id and the
// Idempotency-Key under the idempotency secret, which is not in the store:
// a store dump holds neither the token nor the Idempotency-Key.
//
// A retry with the same Idempotency-Key and request gets the same token
// while it lives; once it has ended (expired, used up, revoked), or with
// another request, it is 409 idempotency_conflict for as long as the
// marker lives: the longest token lifetime (Config.MaxTokenTTL) from the
// mint. A token string is never issued for a second mint.
type marker struct {
	name store.ID
	aead cipher.AEAD
}

// newMarker names the marker of an Idempotency-Key of a partner key, per
// kind of secret: a client secret is public, so it never replays what the
// server secret minted.
func newMarker(secret []byte, role Role, keyID, idemKey string) marker {
	mac := func(label string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(label))
		m.Write([]byte{byte(role)})
		m.Write([]byte(keyID))
		m.Write([]byte{0})
		m.Write([]byte(idemKey))
		return m.Sum(nil)
	}
	var mk marker
	copy(mk.name[:], mac("tokensvc idempotency name v2\x00"))
	block, err := aes.NewCipher(mac("tokensvc idempotency seal v2\x00"))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	if mk.aead, err = cipher.NewGCM(block); err != nil {
		panic(err)
	}
	return mk
}

// digestLen is the size of a request digest.
const digestLen = sha256.Size

// digest sums what makes two mints the same request: the bundle, its
// private part, the lifetime and the token policy.
func digest(rec store.Record) []byte {
	h := sha256.New()
	var n [8]byte
	for _, part := range [][]byte{rec.Bundle, rec.Private} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	for _, v := range []uint64{uint64(rec.TTL()), uint64(rec.MaxUses), uint64(rec.ReuseGrace), uint64(rec.IdleTTL)} {
		binary.BigEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	return h.Sum(nil)
}

// seal is the marker's value: a random nonce, then the token and the
// digest sealed under the marker's key.
func (m marker) seal(token uuid.UUID, sum []byte) ([]byte, error) {
	out := make([]byte, m.aead.NonceSize(), m.aead.NonceSize()+len(token)+digestLen+m.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	plain := append(token[:], sum...)
	return m.aead.Seal(out, out, plain, m.name[:]), nil
}

func (m marker) open(v []byte) (uuid.UUID, []byte, error) {
	n := m.aead.NonceSize()
	if len(v) < n {
		return uuid.UUID{}, nil, errSeal
	}
	plain, err := m.aead.Open(nil, v[:n], v[n:], m.name[:])
	if err != nil || len(plain) != 16+digestLen {
		return uuid.UUID{}, nil, errSeal
	}
	var token uuid.UUID
	copy(token[:], plain)
	return token, plain[16:], nil
}

// putIdempotent mints rec for an Idempotency-Key: the token a previous
// request with the key minted, if it is the same request and its token
// lives (replayed), or else a fresh one remembered under the key.
func (s *Server) putIdempotent(ctx context.Context, c caller, idemKey string, rec store.Record) (_ uuid.UUID, _ store.ID, _ store.Record, replayed bool, _ error) {
	if len(s.cfg.IdempotencySecret) == 0 {
		return uuid.UUID{}, store.ID{}, rec, false, newError(api.ErrorErrorIdempotencyUnavailable, "Idempotency-Key needs TOKENSVC_IDEMPOTENCY_SECRET on a Redis-backed service")
	}
	m := newMarker(s.cfg.IdempotencySecret, c.role, rec.KeyID, idemKey)
	sum := digest(rec)
	prev, err := s.cfg.Store.GetMarker(ctx, m.name)
	switch {
	case err == nil:
		token, id, rec, err := s.replay(ctx, m, prev, sum)
		return token, id, rec, true, err
	case !errors.Is(err, store.ErrNotFound):
		return uuid.UUID{}, store.ID{}, rec, false, err
	}
	token, id, err := s.put(ctx, rec, mintNote())
	if err != nil {
		return token, id, rec, false, err
	}
	v, err := m.seal(token, sum)
	if err == nil {
		err = s.cfg.Store.PutMarker(ctx, m.name, v, s.cfg.MaxTokenTTL)
	}
	if err == nil {
		return token, id, rec, false, nil
	}
	// Never handed out: end it, so it cannot be found later.
	if rerr := s.cfg.Store.Revoke(ctx, id, s.cfg.Now(), string(noteByService)); rerr != nil {
		s.log.WarnContext(ctx, "could not end a token minted for an Idempotency-Key that another request took", "token_id", id.String(), "err", rerr)
	}
	if !errors.Is(err, store.ErrExists) {
		return uuid.UUID{}, store.ID{}, rec, false, err
	}
	// A concurrent request with the same key was first: answer as it did.
	if prev, err = s.cfg.Store.GetMarker(ctx, m.name); err != nil {
		return uuid.UUID{}, store.ID{}, rec, false, err
	}
	token, id, rec, err = s.replay(ctx, m, prev, sum)
	return token, id, rec, true, err
}

// replay answers a request whose Idempotency-Key has a marker.
func (s *Server) replay(ctx context.Context, m marker, v, sum []byte) (uuid.UUID, store.ID, store.Record, error) {
	token, want, err := m.open(v)
	if err != nil {
		return uuid.UUID{}, store.ID{}, store.Record{}, err
	}
	if !bytes.Equal(want, sum) {
		return uuid.UUID{}, store.ID{}, store.Record{}, newError(api.ErrorErrorIdempotencyConflict, "this Idempotency-Key was used with another request")
	}
	id := tokenID(token.String())
	rec, err := s.cfg.Store.Get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return token, id, rec, newError(api.ErrorErrorIdempotencyConflict, "the token of this Idempotency-Key has ended")
	case err != nil:
		return token, id, rec, err
	case rec.State != store.Live:
		return token, id, rec, newError(api.ErrorErrorIdempotencyConflict, "the token of this Idempotency-Key was %s", rec.State)
	case rec.UsesLeft() == 0:
		return token, id, rec, newError(api.ErrorErrorIdempotencyConflict, "the token of this Idempotency-Key has had its uses")
	}
	return token, id, rec, nil
}
