package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

// Verify answers the bundle of a live token.
func (s *Server) Verify(ctx context.Context, _ api.VerifyRequestObject) (api.VerifyResponseObject, error) {
	ri := info(ctx)
	id, ok := parseToken(ri.token)
	if !ok {
		return nil, errInvalidToken
	}
	ri.tokenID = id.String()
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	rec, err := s.cfg.Store.Get(sctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errInvalidToken
	case err != nil:
		return nil, err
	case !s.cfg.Now().Before(rec.ExpiresAt):
		return nil, errInvalidToken // expired a moment ago; the store drops it soon
	}
	return bundleResponse(rec.Bundle), nil
}

// bundleResponse writes a stored bundle byte for byte: it was validated
// and compacted when it was minted, so it is neither decoded nor re-encoded.
type bundleResponse []byte

func (b bundleResponse) VisitVerifyResponse(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	return err
}
