package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/store"
)

// Verify answers the bundle of a live token, counting one use.
func (s *Server) Verify(ctx context.Context, _ api.VerifyRequestObject) (api.VerifyResponseObject, error) {
	ri := info(ctx)
	partner, err := s.partnerIfPresented(ri)
	if err != nil {
		return nil, err
	}
	rec, err := s.use(ctx, ri, ri.token)
	if err != nil {
		return nil, err
	}
	s.metrics.tokenVerified(ri.route)
	return bundleResponse(visible(rec, partner)), nil
}

// use is one verification of a presented token, shared by /verify and
// /auth: it counts the use and applies the partner key's rules.
func (s *Server) use(ctx context.Context, ri *requestInfo, presented string) (store.Record, error) {
	token, id, ok := parseToken(presented)
	if !ok {
		return store.Record{}, errInvalidToken
	}
	ri.tokenID = id.String()
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	if err := s.checkOrigin(sctx, id, ri.origin); err != nil {
		return store.Record{}, err
	}
	rec, err := s.cfg.Store.Consume(sctx, id, s.cfg.Now())
	if err != nil {
		return store.Record{}, err
	}
	if err := s.admit(rec, ri.origin); err != nil {
		return store.Record{}, err
	}
	return rec, unseal(token, &rec)
}

// checkOrigin refuses a browser call from an origin the token's partner key
// does not allow, before a use is spent on it. Server-side calls (no
// Origin) skip the extra store read.
func (s *Server) checkOrigin(ctx context.Context, id store.ID, origin string) error {
	if origin == "" {
		return nil
	}
	rec, err := s.cfg.Store.Get(ctx, id)
	switch {
	case err != nil:
		return err
	case rec.State == store.Used:
		return errTokenUsed
	case rec.State == store.Revoked:
		return errTokenRevoked
	case !s.cfg.Partners.OriginAllowed(rec.KeyID, origin):
		return errOrigin
	}
	return nil
}

// admit applies the rules of the minting partner key to a live record:
// key disabled, browser origin. (The store itself refuses the tokens of a
// key revoked as a whole.)
func (s *Server) admit(rec store.Record, origin string) error {
	if key, ok := s.cfg.Partners.ByID(rec.KeyID); ok && key.Disabled {
		return errTokenRevoked
	}
	if origin != "" && !s.cfg.Partners.OriginAllowed(rec.KeyID, origin) {
		return errOrigin
	}
	return nil
}

// visible is what a caller may read of a record: everything for the
// minting partner's own backend, the public fields for anyone else.
func visible(rec store.Record, partner *keys.Key) json.RawMessage {
	if partner != nil && partner.ID == rec.KeyID {
		return mergeBundle(rec.Bundle, rec.Private)
	}
	return rec.Bundle
}

// VerifyBatch verifies many tokens with one store round trip per node for
// the uses and one for the key epochs.
func (s *Server) VerifyBatch(ctx context.Context, req api.VerifyBatchRequestObject) (api.VerifyBatchResponseObject, error) {
	ri := info(ctx)
	partner, err := s.partnerIfPresented(ri)
	if err != nil {
		return nil, err
	}
	if req.Body == nil || len(req.Body.Tokens) == 0 || len(req.Body.Tokens) > s.cfg.MaxBatch {
		return nil, newError(api.ErrorErrorInvalidBody, "tokens must hold 1 to %d tokens", s.cfg.MaxBatch)
	}
	results := make([]api.BatchResult, len(req.Body.Tokens))
	ids := make([]store.ID, 0, len(results))
	at := make([]int, 0, len(results)) // at[j] is the result index of ids[j]
	tokens := make([]string, 0, len(results))
	for i, t := range req.Body.Tokens {
		if token, id, ok := parseToken(t); ok {
			ids, at, tokens = append(ids, id), append(at, i), append(tokens, token)
		} else {
			results[i] = rejected(errInvalidToken)
			ri.failures++
		}
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	used := s.cfg.Store.ConsumeMany(sctx, ids, s.cfg.Now())
	for _, r := range used {
		if errors.Is(r.Err, store.ErrUnavailable) {
			return nil, r.Err
		}
	}
	for j, r := range used {
		err := r.Err
		if err == nil {
			err = s.admit(r.Record, ri.origin)
		}
		if err == nil {
			err = unseal(tokens[j], &r.Record)
		}
		if err != nil {
			e, ok := toError(err)
			if !ok {
				return nil, err
			}
			results[at[j]] = rejected(e)
			ri.failures++
			continue
		}
		b := visible(r.Record, partner)
		results[at[j]] = api.BatchResult{Valid: true, Bundle: &b}
	}
	s.metrics.batchChecked(ri.route, results)
	return batchResponse(results), nil
}

func rejected(e *Error) api.BatchResult {
	code := api.BatchResultError(e.Code)
	return api.BatchResult{Valid: false, Error: &code}
}

// bundleResponse writes a bundle byte for byte: it was validated and
// compacted when it was minted, so it is neither decoded nor re-encoded.
type bundleResponse []byte

func (b bundleResponse) VisitVerifyResponse(w http.ResponseWriter) error { return writeJSON(w, b) }

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// writeJSON answers 200 with a JSON body made by hand, never cached.
func writeJSON(w http.ResponseWriter, body []byte) error {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	return err
}

// batchResponse writes the batch answer by hand, copying each bundle byte
// for byte (encoding/json would re-validate and re-compact every one).
type batchResponse []api.BatchResult

func (rs batchResponse) VisitVerifyBatchResponse(w http.ResponseWriter) error {
	n := 16
	for _, r := range rs {
		n += 40
		if r.Bundle != nil {
			n += len(*r.Bundle)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, `{"results":[`...)
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		if r.Valid {
			b = append(b, `{"bundle":`...)
			b = append(b, *r.Bundle...)
			b = append(b, `,"valid":true}`...)
			continue
		}
		b = append(b, `{"error":"`...)
		b = append(b, *r.Error...) // a code from the spec's enum: no escaping needed
		b = append(b, `","valid":false}`...)
	}
	b = append(b, "]}\n"...)
	return writeJSON(w, b)
}
