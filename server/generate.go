package server

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/store"
)

// Generate mints a token for the bundle. The partner was authenticated and
// the body validated by the operation's middleware.
func (s *Server) Generate(ctx context.Context, req api.GenerateRequestObject) (api.GenerateResponseObject, error) {
	ri := info(ctx)
	if req.JSONBody == nil {
		return nil, newError(api.ErrorErrorUnsupportedMediaType, "Content-Type must be %s or %s", mediaJSON, mediaForm)
	}
	ttl, err := s.tokenTTL(req.Params.Ttl, ri.key)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	rec := store.Record{Bundle: *req.JSONBody, KeyID: ri.key.ID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	token, id, err := s.put(ctx, rec)
	if err != nil {
		return nil, err
	}
	ri.tokenID = id.String()
	return api.Generate200JSONResponse{
		Token:          token,
		TokenId:        id.String(),
		ExpirationTime: rec.ExpiresAt.Unix(),
		ExpiresIn:      int64(ttl / time.Second),
	}, nil
}

// put stores rec under a fresh token. A taken ID means a 128-bit hash
// collision between random tokens; it is retried, not trusted to be
// impossible.
func (s *Server) put(ctx context.Context, rec store.Record) (uuid.UUID, store.ID, error) {
	ctx, cancel := s.storeCtx(ctx)
	defer cancel()
	for range 3 {
		token, id, err := newToken()
		if err != nil {
			return token, id, err
		}
		err = s.cfg.Store.Put(ctx, id, rec)
		if !errors.Is(err, store.ErrExists) {
			return token, id, err
		}
	}
	return uuid.UUID{}, store.ID{}, errors.New("server: three token collisions in a row")
}

// tokenTTL picks the lifetime: the request's, else the key's default, else
// the service's, within the key's and the service's maximum.
func (s *Server) tokenTTL(requested *int64, key keys.Key) (time.Duration, error) {
	limit := s.cfg.MaxTokenTTL
	if key.MaxTTL > 0 && key.MaxTTL < limit {
		limit = key.MaxTTL
	}
	if requested == nil {
		ttl := s.cfg.TokenTTL
		if key.DefaultTTL > 0 {
			ttl = key.DefaultTTL
		}
		return min(ttl, limit), nil
	}
	maxSec := int64(limit / time.Second)
	if *requested < 1 || *requested > maxSec {
		return 0, newError(api.ErrorErrorInvalidTtl, "ttl must be between 1 and %d seconds", maxSec)
	}
	return time.Duration(*requested) * time.Second, nil
}
