// Package audit is tokensvc's audit trail: one JSON line per
// security-relevant event (a mint, a use, a refusal, a revocation, a
// refresh, a key reload, an admin call, a rate-limit block, the reuse of a
// used-up or revoked token), kept apart from the access log and written to
// a Sink.
//
// An event names tokens by their token id and partners by their key id.
// It never holds a token, a secret, a bundle value or a query string: the
// Event type has no field that could take one, and cmd/tokensvc's
// TestNoSecretInLogsOrRedis reads the whole trail back looking for them.
//
// The server emits every event itself, from the handler or middleware
// that knows what happened; this package only encodes and delivers them.
package audit

import (
	"encoding/json"
	"time"
)

// Kind is what an event is about: the operation asked for, or what the
// service did on its own (a key reload).
type Kind string

// Kinds of events. One request is one event (a batch is one per token),
// whatever its outcome; Reuse and Block replace the request's own kind
// when they apply.
const (
	Mint      Kind = "mint"       // POST /generate
	Use       Kind = "use"        // GET /verify, each token of POST /verify/batch, /auth
	Reuse     Kind = "reuse"      // a token presented (use, refresh) after it was used up or revoked: suspected theft
	Refresh   Kind = "refresh"    // POST /refresh: the old and the new token id
	Lookup    Kind = "lookup"     // GET /tokens/{id}
	Revoke    Kind = "revoke"     // DELETE /tokens/{id}, DELETE /admin/tokens/{id}, POST /admin/keys/{id}/revoke-tokens, a removed key
	Admin     Kind = "admin"      // GET /admin/keys, POST /admin/reload
	KeyReload Kind = "key_reload" // the partner key set changed
	Block     Kind = "block"      // a request refused by a rate limit (429)
)

// Kinds lists every kind, for validating filters.
func Kinds() []Kind {
	return []Kind{Mint, Use, Reuse, Refresh, Lookup, Revoke, Admin, KeyReload, Block}
}

// OK is the outcome of an event that did what was asked; any other
// outcome is the error code the caller was answered.
const OK = "ok"

// Revokers: who ended a token (Event.By).
const (
	ByPartner    = "partner"     // DELETE /tokens/{id} with the minting key's server secret
	ByAdmin      = "admin"       // the admin API
	ByKeyRemoval = "key_removed" // a reload removed the minting key
)

// Scopes of a revocation (Event.Scope).
const (
	ScopeToken = "token" // one token
	ScopeKey   = "key"   // every token the key minted so far
)

// Limits that block (Event.Limit).
const (
	LimitFailures = "failures" // the brute-force guard: too many failed checks from this client
	LimitMinting  = "minting"  // the partner key's minting rate
)

// Policy is the policy a token was minted with: counts and durations, and
// the names (never the values) of its private fields.
type Policy struct {
	Uses       uint32   `json:"uses,omitempty"`        // use limit; 0 is none
	ReuseGrace int64    `json:"reuse_grace,omitempty"` // seconds
	IdleTTL    int64    `json:"idle_ttl,omitempty"`    // seconds
	Private    []string `json:"private,omitempty"`     // field names
}

// Event is one line of the audit trail. Fields that do not apply to its
// Kind are left empty and are not written.
type Event struct {
	// Kind marks a line of this trail among others on a shared stream
	// (stdout): always "audit", set by Encode.
	Kind string `json:"kind"`
	// Time is when it happened, in UTC to the microsecond.
	Time time.Time `json:"time"`
	// Event is what happened.
	Event Kind `json:"event"`
	// Outcome is OK or the error code the request was answered with.
	Outcome string `json:"outcome"`
	// RequestID is the request's id, as in the access log and its
	// X-Request-Id answer; empty for events of no request (KeyReload).
	RequestID string `json:"request_id,omitempty"`
	// Route is the route pattern, never the URL.
	Route string `json:"route,omitempty"`
	// Client is the client's address as tokensvc tells it (the peer, or
	// X-Forwarded-For from a trusted proxy).
	Client string `json:"client,omitempty"`
	// KeyID is the partner key the event is about: the caller's, or the
	// key that minted the token.
	KeyID string `json:"key_id,omitempty"`
	// TokenID is the token's id (its hash, which opens nothing).
	TokenID string `json:"token_id,omitempty"`
	// NewTokenID is the token a refresh minted.
	NewTokenID string `json:"new_token_id,omitempty"`
	// TTL is a minted token's lifetime in seconds.
	TTL int64 `json:"ttl,omitempty"`
	// Policy is a minted token's policy.
	Policy *Policy `json:"policy,omitempty"`
	// Replay says a mint answered an earlier token (Idempotency-Key).
	Replay bool `json:"replay,omitempty"`
	// Uses is how many uses the token has had, after this one.
	Uses int64 `json:"uses,omitempty"`
	// By is who revoked: ByPartner, ByAdmin or ByKeyRemoval.
	By string `json:"by,omitempty"`
	// Scope is what a revocation ended: ScopeToken or ScopeKey.
	Scope string `json:"scope,omitempty"`
	// Epoch is a key's revocation epoch after a key-wide revocation.
	Epoch uint64 `json:"epoch,omitempty"`
	// Action names an Admin call: list_keys or reload.
	Action string `json:"action,omitempty"`
	// Generation is the key set's generation after a reload.
	Generation uint64 `json:"generation,omitempty"`
	// Added and Removed are the key ids a reload added and removed.
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Limit is the limit that blocked: LimitFailures or LimitMinting.
	Limit string `json:"limit,omitempty"`
	// RetryAfter is how many seconds a blocked client must wait.
	RetryAfter int64 `json:"retry_after,omitempty"`
	// SuspectedTheft flags a Reuse: a used-up or revoked token presented
	// again is what a stolen copy looks like.
	SuspectedTheft bool `json:"suspected_theft,omitempty"`
}

// Encode is the event's line: one JSON object, no newline.
func Encode(e Event) ([]byte, error) {
	e.Kind = "audit"
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	return json.Marshal(e)
}
