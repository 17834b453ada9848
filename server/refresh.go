package server

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

// Refresh swaps a live token for a fresh one with the same bundle and
// policy. The old token ends by the same atomic step that reads it; if the
// new one cannot be stored, the old one is put back.
func (s *Server) Refresh(ctx context.Context, _ api.RefreshRequestObject) (api.RefreshResponseObject, error) {
	ri := info(ctx)
	token, id, ok := parseToken(ri.token)
	if !ok {
		return nil, errInvalidToken
	}
	ri.tokenID = id.String()
	fresh, newID, rec, err := s.refresh(ctx, ri.caller, token, id)
	if err != nil {
		return nil, aboutToken(err, id, rec.KeyID)
	}
	ri.tokenID = newID.String()
	e := s.event(ctx, OpRefresh)
	e.TokenID, e.NewTokenID, e.KeyID = id.String(), newID.String(), rec.KeyID
	if err := s.record(ctx, e); err != nil {
		return nil, err
	}
	s.metrics.tokenMinted(ri.route)
	return mintedResponse(minted(fresh, newID, rec, rec.CreatedAt)), nil
}

// refresh is Refresh's work: the new token and its record. On an error,
// the record holds what is known of the old token (its key).
func (s *Server) refresh(ctx context.Context, c caller, token string, id store.ID) (uuid.UUID, store.ID, store.Record, error) {
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	// Take and Restore keep no history: every outcome is noted here.
	if err := s.precheck(sctx, OpRefresh, c, id); err != nil {
		s.noteRefusal(sctx, OpRefresh, id, err)
		return uuid.UUID{}, store.ID{}, store.Record{}, err
	}
	now := s.cfg.Now()
	old, err := s.cfg.Store.Take(sctx, id, now)
	if err != nil {
		s.noteRefusal(sctx, OpRefresh, id, err)
		return uuid.UUID{}, store.ID{}, old, err
	}
	sealed := old
	if err := s.access.decide(OpRefresh, c, &old); err != nil {
		s.restore(sctx, id, sealed) // refused, not ended
		s.noteRefusal(sctx, OpRefresh, id, err)
		return uuid.UUID{}, store.ID{}, old, err
	}
	if err := unseal(token, &old); err != nil {
		return uuid.UUID{}, store.ID{}, old, err
	}
	limit := old.Session().Add(s.cfg.MaxSessionLifetime)
	if !now.Add(minRefreshTTL).Before(limit) {
		s.restore(sctx, id, sealed)
		err := newError(api.ErrorErrorSessionExpired, "the session reached its maximum lifetime; mint a new token")
		s.noteRefusal(sctx, OpRefresh, id, err)
		return uuid.UUID{}, store.ID{}, old, err
	}
	rec := old
	rec.SessionStart, rec.CreatedAt, rec.Uses = old.Session(), now, 0
	rec.ExpiresAt = now.Add(old.TTL())
	if rec.ExpiresAt.After(limit) {
		rec.ExpiresAt = limit
	}
	rec.History = !s.cfg.NoTokenHistory
	fresh, newID, err := s.put(sctx, rec, refreshedMintNote(id))
	if err != nil {
		s.restore(sctx, id, sealed)
		return uuid.UUID{}, store.ID{}, old, err
	}
	s.annotate(sctx, store.Note{ID: id, Text: refreshedNote(newID)})
	return fresh, newID, rec, nil
}

// minRefreshTTL is the shortest lifetime worth minting on a refresh.
const minRefreshTTL = time.Second

func (s *Server) restore(ctx context.Context, id store.ID, old store.Record) {
	if err := s.cfg.Store.Restore(ctx, id, old); err != nil {
		s.log.WarnContext(ctx, "could not restore a token after a failed refresh", "token_id", id.String(), "err", err)
	}
}
