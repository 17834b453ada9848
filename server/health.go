package server

import (
	"bytes"
	"context"

	"github.com/tokensvc/tokensvc/api"
)

// Healthz says the process serves HTTP.
func (s *Server) Healthz(context.Context, api.HealthzRequestObject) (api.HealthzResponseObject, error) {
	return api.Healthz200JSONResponse{Status: api.Ok}, nil
}

// Readyz says whether the store answers.
func (s *Server) Readyz(ctx context.Context, _ api.ReadyzRequestObject) (api.ReadyzResponseObject, error) {
	ctx, cancel := s.storeCtx(ctx)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		return nil, err
	}
	return api.Readyz200JSONResponse{Status: api.Ok}, nil
}

// Openapi serves the contract this binary was generated from.
func (s *Server) Openapi(context.Context, api.OpenapiRequestObject) (api.OpenapiResponseObject, error) {
	return api.Openapi200ApplicationyamlResponse{Body: bytes.NewReader(api.Spec), ContentLength: int64(len(api.Spec))}, nil
}
