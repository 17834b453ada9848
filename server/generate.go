package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/audit"
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
	ttl, err := s.tokenTTL(req.Params.Ttl, ri.caller.key)
	if err != nil {
		return nil, err
	}
	pol, err := readPolicy(req.Params, ttl)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	rec := store.Record{KeyID: ri.caller.key.ID, CreatedAt: now, ExpiresAt: now.Add(ttl), History: !s.cfg.NoTokenHistory}
	if err := pol.apply(&rec, *req.JSONBody); err != nil {
		return nil, err
	}
	if err := s.access.recheck(ri.caller); err != nil {
		return nil, err
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()

	var token uuid.UUID
	var id store.ID
	replayed := false
	if req.Params.IdempotencyKey != nil {
		token, id, rec, replayed, err = s.putIdempotent(sctx, ri.caller, *req.Params.IdempotencyKey, rec)
	} else {
		token, id, err = s.put(sctx, rec, mintNote())
	}
	if err != nil {
		return nil, err
	}
	ri.tokenID = id.String()
	e := s.event(ctx, OpMint)
	e.TokenID, e.TTL, e.Policy, e.Replay = id.String(), int64(rec.TTL()/time.Second), pol.audit(), replayed
	if err := s.record(ctx, e); err != nil {
		return nil, err
	}
	s.metrics.tokenMinted(ri.route)
	return mintedResponse(minted(token, id, rec, now)), nil
}

// mintedResponse writes the answer of /generate and /refresh without
// reflection: its fields are a UUID, hex and integers, which need no
// escaping.
type mintedResponse api.GeneratedToken

func (m mintedResponse) write(w http.ResponseWriter) error {
	b := make([]byte, 0, 160)
	b = append(b, `{"expiration_time":`...)
	b = strconv.AppendInt(b, m.ExpirationTime, 10)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, m.ExpiresIn, 10)
	b = append(b, `,"token":"`...)
	b = append(b, uuid.UUID(m.Token).String()...)
	b = append(b, `","token_id":"`...)
	b = append(b, m.TokenId...)
	b = append(b, "\"}\n"...)
	return writeJSON(w, b)
}

func (m mintedResponse) VisitGenerateResponse(w http.ResponseWriter) error { return m.write(w) }
func (m mintedResponse) VisitRefreshResponse(w http.ResponseWriter) error  { return m.write(w) }

// minted is the answer for a token minted as rec.
func minted(token uuid.UUID, id store.ID, rec store.Record, now time.Time) api.GeneratedToken {
	return api.GeneratedToken{
		Token:          token,
		TokenId:        id.String(),
		ExpirationTime: rec.ExpiresAt.Unix(),
		ExpiresIn:      int64(rec.ExpiresAt.Sub(now) / time.Second),
	}
}

// put stores rec under a fresh token, with note as the first entry of its
// history. A taken ID means a 128-bit hash collision between random
// tokens; it is retried, not trusted to be impossible.
func (s *Server) put(ctx context.Context, rec store.Record, note string) (uuid.UUID, store.ID, error) {
	for range 3 {
		token, id, err := newToken()
		if err != nil {
			return token, id, err
		}
		sealed := rec
		if err := seal(token.String(), &sealed); err != nil {
			return token, id, err
		}
		err = s.cfg.Store.Put(ctx, id, sealed, note)
		if !errors.Is(err, store.ErrExists) {
			return token, id, err
		}
	}
	return uuid.UUID{}, store.ID{}, errors.New("server: three token collisions in a row")
}

// audit is the policy as the audit trail shows it: no bundle value.
func (pol policy) audit() *audit.Policy {
	return &audit.Policy{Uses: pol.uses, ReuseGrace: int64(pol.grace / time.Second), IdleTTL: int64(pol.idle / time.Second), Private: pol.private}
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
