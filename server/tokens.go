package server

import (
	"context"
	"errors"
	"time"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/store"
)

// GetToken shows a token's metadata to the partner that minted it.
func (s *Server) GetToken(ctx context.Context, req api.GetTokenRequestObject) (api.GetTokenResponseObject, error) {
	ri := info(ctx)
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	id, rec, err := s.ownToken(sctx, OpLookup, ri.caller, req.TokenId)
	if err != nil {
		return nil, err
	}
	ri.tokenID = id.String()
	out := tokenInfo(id, rec)
	if rec.History {
		entries, err := s.cfg.Store.History(sctx, id)
		if err != nil {
			return nil, aboutToken(err, id, rec.KeyID)
		}
		h := history(entries)
		out.History = &h
	}
	if err := s.record(ctx, s.tokenEvent(ctx, OpLookup, id)); err != nil {
		return nil, err
	}
	return api.GetToken200JSONResponse(out), nil
}

// RevokeToken ends one of the partner's tokens now.
func (s *Server) RevokeToken(ctx context.Context, req api.RevokeTokenRequestObject) (api.RevokeTokenResponseObject, error) {
	ri := info(ctx)
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	id, _, err := s.ownToken(sctx, OpRevoke, ri.caller, req.TokenId)
	if err != nil {
		return nil, err
	}
	ri.tokenID = id.String()
	if err := s.revoke(sctx, id, string(noteByPartner)); err != nil {
		return nil, aboutToken(err, id, "")
	}
	if err := s.record(ctx, s.tokenEvent(ctx, OpRevoke, id)); err != nil {
		return nil, err
	}
	return api.RevokeToken204Response{}, nil
}

// tokenEvent is the event of op done on the token id.
func (s *Server) tokenEvent(ctx context.Context, op Op, id store.ID) audit.Event {
	e := s.event(ctx, op)
	e.TokenID = id.String()
	return e
}

// ownToken finds a token for op, which the access table allows only on the
// caller's own tokens: other partners' tokens are as unknown as missing
// ones.
func (s *Server) ownToken(ctx context.Context, op Op, c caller, tokenID string) (store.ID, store.Record, error) {
	id, err := store.ParseID(tokenID)
	if err != nil {
		return id, store.Record{}, errNoSuchToken
	}
	rec, err := s.cfg.Store.Get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return id, rec, aboutToken(errNoSuchToken, id, "")
	case err != nil:
		return id, rec, aboutToken(err, id, "")
	}
	return id, rec, aboutToken(s.access.decide(op, c, &rec), id, "")
}

func (s *Server) revoke(ctx context.Context, id store.ID, note string) error {
	err := s.cfg.Store.Revoke(ctx, id, s.cfg.Now(), note)
	if errors.Is(err, store.ErrNotFound) {
		return errNoSuchToken
	}
	return err
}

func tokenInfo(id store.ID, rec store.Record) api.TokenInfo {
	out := api.TokenInfo{
		TokenId: id.String(),
		KeyId:   rec.KeyID,
		State:   api.TokenInfoState(rec.State.String()),
		Uses:    int64(rec.Uses),
	}
	if rec.State != store.Live {
		return out // a tombstone keeps nothing else
	}
	out.CreatedAt, out.ExpiresAt, out.SessionStartedAt = rec.CreatedAt.Unix(), rec.ExpiresAt.Unix(), rec.Session().Unix()
	if rec.MaxUses > 0 {
		m, left := int64(rec.MaxUses), rec.UsesLeft()
		out.MaxUses, out.UsesLeft = &m, &left
	}
	out.IdleTtl = seconds(rec.IdleTTL)
	out.ReuseGrace = seconds(rec.ReuseGrace)
	return out
}

func seconds(d time.Duration) *int64 {
	if d <= 0 {
		return nil
	}
	n := int64(d / time.Second)
	return &n
}
