package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/store"
)

// Verify answers the bundle of a live token, counting one use.
func (s *Server) Verify(ctx context.Context, _ api.VerifyRequestObject) (api.VerifyResponseObject, error) {
	ri := info(ctx)
	rec, err := s.use(ctx, OpVerify, ri.caller, ri.token)
	if err != nil {
		return nil, err
	}
	s.metrics.tokenVerified(ri.route)
	return bundleResponse(s.visible(ri.caller, rec)), nil
}

// use is one verification of a presented token for op (/verify, /auth): it
// counts the use, with the access table's cells decided around it, unseals
// the bundle and records the use in the audit trail. Its refusals are
// about the token (aboutToken), for the trail.
func (s *Server) use(ctx context.Context, op Op, c caller, presented string) (store.Record, error) {
	token, id, ok := parseToken(presented)
	if !ok {
		return store.Record{}, errInvalidToken
	}
	info(ctx).tokenID = id.String()
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	if err := s.precheck(sctx, op, c, id); err != nil {
		s.noteRefusal(sctx, op, id, err)
		return store.Record{}, aboutToken(err, id, "")
	}
	rec, err := s.cfg.Store.Consume(sctx, id, s.cfg.Now(), useNotes[op])
	if err == nil {
		if err = s.access.decide(op, c, &rec); err != nil {
			s.noteRefusal(sctx, op, id, err) // the store kept the use; this says why it was refused
		}
	}
	if err == nil {
		err = unseal(token, &rec)
	}
	if err != nil {
		return store.Record{}, aboutToken(err, id, rec.KeyID)
	}
	if !s.trail.On() { // the hot path builds no event it would not write
		return rec, nil
	}
	return rec, s.record(ctx, s.useEvent(ctx, op, id, rec))
}

// useEvent is the audit event of a use of rec that passed.
func (s *Server) useEvent(ctx context.Context, op Op, id store.ID, rec store.Record) audit.Event {
	e := s.event(ctx, op)
	e.TokenID, e.KeyID = id.String(), rec.KeyID
	if rec.MaxUses > 0 {
		e.Uses = int64(rec.Uses)
	}
	return e
}

// precheck decides op on the token's record before a use is spent on it,
// when the cell depends on the record: a browser's origin. Server-side
// callers skip the extra store read.
func (s *Server) precheck(ctx context.Context, op Op, c caller, id store.ID) error {
	if c.origin == "" {
		return nil
	}
	rec, err := s.cfg.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	return s.decideOn(op, c, rec)
}

// decideOn is decide on a record that may be a tombstone, which answers
// why the token ended (for a caller who may use the token at all).
func (s *Server) decideOn(op Op, c caller, rec store.Record) error {
	if err := s.access.decide(op, c, &rec); err != nil {
		return err
	}
	switch rec.State {
	case store.Used:
		return errTokenUsed
	case store.Revoked:
		return errTokenRevoked
	}
	return nil
}

// visible is what c may read of a record: with its private fields if the
// access table says so, the public ones otherwise.
func (s *Server) visible(c caller, rec store.Record) json.RawMessage {
	if s.access.may(OpReadPrivate, c, &rec) {
		return mergeBundle(rec.Bundle, rec.Private)
	}
	return rec.Bundle
}

// VerifyBatch verifies many tokens with one store round trip per node.
// The brute-force guard is charged with the batch's failed checks before
// any result is answered: a batch whose failures the client's allowance
// cannot take is answered 429 as a whole, so no batch reveals more failed
// guesses than the guard allows, however many run at once, and batches of
// valid tokens cost the guard nothing.
func (s *Server) VerifyBatch(ctx context.Context, req api.VerifyBatchRequestObject) (api.VerifyBatchResponseObject, error) {
	ri := info(ctx)
	c := ri.caller
	if req.Body == nil || len(req.Body.Tokens) == 0 || len(req.Body.Tokens) > s.cfg.MaxBatch {
		return nil, newError(api.ErrorErrorInvalidBody, "tokens must hold 1 to %d tokens", s.cfg.MaxBatch)
	}
	results, passed, err := s.verifyBatch(ctx, c, req.Body.Tokens)
	if err != nil {
		return nil, err // an outage says nothing of the tokens
	}
	if err := s.chargeChecks(ctx, len(results)-passed); err != nil {
		return nil, err
	}
	s.metrics.batchChecked(ri.route, results)
	return batchResponse(results), nil
}

// batchTrail records the audit events of a batch's tokens: one per token,
// in request order, passed or refused; and the notes for the histories of
// the tokens the server refused.
type batchTrail struct {
	s     *Server
	ctx   context.Context
	evs   []audit.Event
	notes []store.Note
}

// note keeps the server's refusal of a token for its history.
func (b *batchTrail) note(id store.ID, err error) {
	if text, ok := refusalNote(OpBatch, err); ok {
		b.notes = append(b.notes, store.Note{ID: id, Text: text})
	}
}

// passed records a token that passed.
func (b *batchTrail) passed(id store.ID, rec store.Record) {
	if b.s.trail.On() {
		b.evs = append(b.evs, b.s.useEvent(b.ctx, OpBatch, id, rec))
	}
}

// refused records a token refused with err (and counts a reuse, trail or
// not).
func (b *batchTrail) refused(err error, id store.ID, keyID string) {
	e := b.s.refusal(b.ctx, OpBatch, aboutToken(err, id, keyID))
	if b.s.trail.On() {
		b.evs = append(b.evs, e)
	}
}

// write records the events; its error is the batch's answer when the
// trail is required and an event could not be recorded.
func (b *batchTrail) write() error {
	var failed error
	for _, e := range b.evs {
		if err := b.s.record(b.ctx, e); err != nil {
			failed = err
		}
	}
	return failed
}

// verifyBatch is VerifyBatch's work: the results, and how many passed.
func (s *Server) verifyBatch(ctx context.Context, c caller, presented []string) ([]api.BatchResult, int, error) {
	results := make([]api.BatchResult, len(presented))
	ids := make([]store.ID, 0, len(results))
	at := make([]int, 0, len(results)) // at[j] is the result index of ids[j]
	tokens := make([]string, 0, len(results))
	trail := &batchTrail{s: s, ctx: ctx}
	for i, t := range presented {
		if token, id, ok := parseToken(t); ok {
			ids, at, tokens = append(ids, id), append(at, i), append(tokens, token)
		} else {
			results[i] = rejected(errInvalidToken)
			if s.trail.On() {
				trail.evs = append(trail.evs, s.refusal(ctx, OpBatch, errInvalidToken))
			}
		}
	}
	sctx, cancel := s.storeCtx(ctx)
	defer cancel()
	if c.origin != "" {
		// A browser's origin is decided before any use is spent.
		keep := 0
		for j, r := range s.cfg.Store.GetMany(sctx, ids) {
			err := r.Err
			if err == nil {
				if err = s.decideOn(OpBatch, c, r.Record); err != nil {
					trail.note(ids[j], err)
				}
			}
			if err != nil {
				e, ok := toError(err)
				if !ok || errors.Is(err, store.ErrUnavailable) {
					return nil, 0, err
				}
				results[at[j]] = rejected(e)
				trail.refused(err, ids[j], r.Record.KeyID)
				continue
			}
			ids[keep], at[keep], tokens[keep] = ids[j], at[j], tokens[j]
			keep++
		}
		ids, at, tokens = ids[:keep], at[:keep], tokens[:keep]
	}
	used := s.cfg.Store.ConsumeMany(sctx, ids, s.cfg.Now(), useNotes[OpBatch])
	for _, r := range used {
		if errors.Is(r.Err, store.ErrUnavailable) {
			return nil, 0, r.Err
		}
	}
	passed := 0
	for j, r := range used {
		err := r.Err
		if err == nil {
			if err = s.access.decide(OpBatch, c, &r.Record); err != nil {
				trail.note(ids[j], err)
			}
		}
		if err == nil {
			err = unseal(tokens[j], &r.Record)
		}
		if err != nil {
			e, ok := toError(err)
			if !ok {
				return nil, 0, err
			}
			results[at[j]] = rejected(e)
			trail.refused(err, ids[j], r.Record.KeyID)
			continue
		}
		b := s.visible(c, r.Record)
		results[at[j]] = api.BatchResult{Valid: true, Bundle: &b}
		trail.passed(ids[j], r.Record)
		passed++
	}
	s.annotate(sctx, trail.notes...)
	if err := trail.write(); err != nil {
		return nil, passed, err
	}
	return results, passed, nil
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
