package server

import (
	"context"
	"time"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

// A token's history (store.Entry) is shown to the partner that minted it,
// in GET /tokens/{id}. The store writes it with the change it tells of:
// the mint, each use and each use it refuses, a revocation. What the
// server decides on its own (an origin refused, a refresh) it adds with
// Annotate, best effort.
//
// The server's notes are a few bytes each, since a token keeps up to
// store.HistorySize of them: the first byte says what happened, the rest
// is a route code or a token id.
const (
	noteGenerate     = 'g' // minted at /generate
	noteRefreshed    = 'r' // + old token id: minted at /refresh in place of it
	noteUse          = 'u' // + route code: a use, or its refusal by the store
	noteByPartner    = 'p' // revoked by the minting partner
	noteByAdmin      = 'A' // revoked by an admin
	noteByService    = 'i' // revoked by the service: an Idempotency-Key mint that lost a race, never handed out
	noteRefreshedTo  = 'f' // + new token id: ended by a refresh that minted it
	noteRefusedByUs  = 'x' // + route code + error code: refused by the server
	routeVerify      = 'v'
	routeVerifyBatch = 'b'
	routeAuth        = 'a'
	routeRefresh     = 'f'
)

// routeCodes are the route code of the operations that present a token.
var routeCodes = map[Op]byte{OpVerify: routeVerify, OpBatch: routeVerifyBatch, OpForward: routeAuth, OpRefresh: routeRefresh}

// routeNames are the route patterns of the route codes.
var routeNames = map[byte]string{routeVerify: "/verify", routeVerifyBatch: "/verify/batch", routeAuth: "/auth", routeRefresh: "/refresh"}

// useNotes are the notes of a use at each operation, made once: Consume
// runs on every verify.
var useNotes = map[Op]string{OpVerify: "uv", OpBatch: "ub", OpForward: "ua"}

// note texts.
func mintNote() string                      { return string(noteGenerate) }
func refreshedMintNote(old store.ID) string { return string(noteRefreshed) + old.String() }
func refreshedNote(to store.ID) string      { return string(noteRefreshedTo) + to.String() }

// refusalNote is the note of a refusal the server decided about a token
// presented for op: reused (used up, revoked) or refused (an origin, a
// session past its lifetime). Other answers say nothing of the token
// (unknown, an outage) and make no note.
func refusalNote(op Op, err error) (string, bool) {
	e, ok := toError(err)
	rc, presented := routeCodes[op]
	if !ok || !presented {
		return "", false
	}
	switch e.Code {
	case api.ErrorErrorTokenUsed, api.ErrorErrorTokenRevoked, api.ErrorErrorOriginNotAllowed, api.ErrorErrorSessionExpired:
		return string([]byte{noteRefusedByUs, rc}) + string(e.Code), true
	}
	return "", false
}

// noteRefusal adds to the history of the token id the refusal err that
// the server decided (not the store, which keeps its own), if it is one.
func (s *Server) noteRefusal(ctx context.Context, op Op, id store.ID, err error) {
	if text, ok := refusalNote(op, err); ok {
		s.annotate(ctx, store.Note{ID: id, Text: text})
	}
}

// annotate adds notes to tokens' histories, best effort: a failure is
// logged, it never fails the request.
func (s *Server) annotate(ctx context.Context, notes ...store.Note) {
	if len(notes) == 0 {
		return
	}
	if err := s.cfg.Store.Annotate(ctx, s.cfg.Now(), notes...); err != nil {
		s.log.WarnContext(ctx, "could not add to a token's history", "request_id", info(ctx).id, "err", err)
	}
}

// history is a token's history as GET /tokens/{id} shows it, oldest first.
func history(entries []store.Entry) []api.TokenEvent {
	out := make([]api.TokenEvent, 0, len(entries))
	for _, en := range entries {
		if ev, ok := tokenEvent(en); ok {
			out = append(out, ev)
		}
	}
	return out
}

// tokenEvent reads one entry; false for one this binary does not know.
func tokenEvent(en store.Entry) (api.TokenEvent, bool) {
	ev := api.TokenEvent{At: en.At.UTC()}
	if en.Note == "" {
		return ev, false
	}
	rest := en.Note[1:]
	route := func(code byte) *string {
		if name, ok := routeNames[code]; ok {
			return &name
		}
		return nil
	}
	id := func(s string) *string {
		if _, err := store.ParseID(s); err != nil {
			return nil
		}
		return &s
	}
	by := func(b api.TokenEventBy) *api.TokenEventBy { return &b }
	switch en.Note[0] {
	case noteGenerate:
		ev.Event, ev.Route = api.TokenEventEventMinted, ptr("/generate")
	case noteRefreshed:
		ev.Event, ev.Route, ev.OldTokenId = api.TokenEventEventMinted, ptr("/refresh"), id(rest)
	case noteUse:
		if len(rest) != 1 {
			return ev, false
		}
		ev.Event, ev.Route = api.TokenEventEventUsed, route(rest[0])
		if en.Refused != nil {
			code := string(api.ErrorErrorTokenRevoked)
			if en.Refused == store.ErrUsed {
				code = string(api.ErrorErrorTokenUsed)
			}
			ev.Event, ev.Error = api.TokenEventEventReused, &code
		}
	case noteByPartner:
		ev.Event, ev.By = api.TokenEventEventRevoked, by(api.Partner)
	case noteByAdmin:
		ev.Event, ev.By = api.TokenEventEventRevoked, by(api.Admin)
	case noteByService:
		ev.Event = api.TokenEventEventRevoked
	case noteRefreshedTo:
		ev.Event, ev.Route, ev.NewTokenId = api.TokenEventEventRefreshed, ptr("/refresh"), id(rest)
	case noteRefusedByUs:
		if len(rest) < 2 {
			return ev, false
		}
		code := rest[1:]
		ev.Event, ev.Route, ev.Error = api.TokenEventEventRefused, route(rest[0]), &code
		if reuse(OpVerify, api.ErrorError(code)) {
			ev.Event = api.TokenEventEventReused
		}
	default:
		return ev, false
	}
	return ev, true
}

func ptr(s string) *string { return &s }

// The history calls of the store, timed and counted like the others.

func (s meteredStore) Annotate(ctx context.Context, now time.Time, notes ...store.Note) error {
	start := time.Now()
	err := s.next.Annotate(ctx, now, notes...)
	s.observe("annotate", start, err)
	return err
}

func (s meteredStore) History(ctx context.Context, id store.ID) ([]store.Entry, error) {
	start := time.Now()
	h, err := s.next.History(ctx, id)
	s.observe("history", start, err)
	return h, err
}
