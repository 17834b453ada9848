package server

import (
	"context"
	"time"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/store"
)

// AdminListKeys lists the partner keys (never a secret) and their source.
func (s *Server) AdminListKeys(ctx context.Context, _ api.AdminListKeysRequestObject) (api.AdminListKeysResponseObject, error) {
	ks := s.cfg.Partners.Keys()
	out := api.KeyList{Keys: make([]api.KeyInfo, 0, len(ks)), Source: sourceStatus(s.cfg.Partners.Status())}
	for _, k := range ks {
		origins := k.Origins
		if origins == nil {
			origins = []string{}
		}
		out.Keys = append(out.Keys, api.KeyInfo{
			Id: k.ID, Source: k.Source, Origins: origins, Disabled: k.Disabled,
			HasServerSecret: k.HasServerSecret, HasClientSecret: k.HasClientSecret,
			MaxTtl: seconds(k.MaxTTL), DefaultTtl: seconds(k.DefaultTTL),
		})
	}
	if err := s.record(ctx, s.event(ctx, OpAdminListKeys)); err != nil {
		return nil, err
	}
	return api.AdminListKeys200JSONResponse(out), nil
}

// AdminReload reloads the key source now.
func (s *Server) AdminReload(ctx context.Context, _ api.AdminReloadRequestObject) (api.AdminReloadResponseObject, error) {
	if err := s.cfg.Partners.Reload(ctx); err != nil {
		return nil, newError(api.ErrorErrorReloadFailed, "%v; the last good keys stay in force", err)
	}
	if err := s.record(ctx, s.event(ctx, OpAdminReload)); err != nil {
		return nil, err
	}
	return api.AdminReload200JSONResponse(sourceStatus(s.cfg.Partners.Status())), nil
}

// AdminRevokeToken ends any partner's token now.
func (s *Server) AdminRevokeToken(ctx context.Context, req api.AdminRevokeTokenRequestObject) (api.AdminRevokeTokenResponseObject, error) {
	id, err := store.ParseID(req.TokenId)
	if err != nil {
		return nil, errNoSuchToken
	}
	info(ctx).tokenID = id.String()
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	if err := s.revoke(sctx, id, string(noteByAdmin)); err != nil {
		return nil, aboutToken(err, id, "")
	}
	if err := s.record(ctx, s.tokenEvent(ctx, OpAdminRevokeToken, id)); err != nil {
		return nil, err
	}
	return api.AdminRevokeToken204Response{}, nil
}

// AdminRevokeKeyTokens revokes every token a key has minted so far.
func (s *Server) AdminRevokeKeyTokens(ctx context.Context, req api.AdminRevokeKeyTokensRequestObject) (api.AdminRevokeKeyTokensResponseObject, error) {
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	epoch, err := s.cfg.Store.RevokeKey(sctx, req.KeyId)
	if err != nil {
		return nil, aboutKey(err, req.KeyId)
	}
	s.log.InfoContext(ctx, "revoked every token of a key", "key_id", req.KeyId, "epoch", epoch)
	e := s.event(ctx, OpAdminRevokeKeyTokens)
	e.KeyID, e.Epoch = req.KeyId, epoch
	if err := s.record(ctx, e); err != nil {
		return nil, err
	}
	return api.AdminRevokeKeyTokens200JSONResponse{KeyId: req.KeyId, Epoch: int64(epoch)}, nil
}

func sourceStatus(st keys.Status) api.SourceStatus {
	out := api.SourceStatus{Kind: api.SourceStatusKind(st.Kind), Source: st.Source, Keys: st.Keys, Generation: int64(st.Generation)}
	out.LastAttempt = timePtr(st.LastAttempt)
	out.LastSuccess = timePtr(st.LastSuccess)
	if st.LastError != "" {
		out.LastError = &st.LastError
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
