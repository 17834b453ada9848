// Package migrations holds the versioned server-side state that the Redis
// store relies on, and applies it. It is run by `tokensvc migrate`, once per
// deployment, not by every replica at start-up; the server only checks.
//
// # Key schema, layout 2
//
// Every key starts with the configured prefix (default "tokensvc:"):
//
//	<prefix>layout              string  the layout version, written by Apply
//	<prefix>{g}t:<id>           string  one token record, with a TTL
//	<prefix>{g}e:<key id>       string  a partner key's revocation epoch, per group (INCR)
//	<prefix>{g}i:<name>         string  a marker (store PutMarker): at most 512 opaque bytes, with a TTL
//	rate:<prefix>rl:<what>      string  a rate limit's GCRA state (redis_rate)
//
// <id> is the first 16 bytes of SHA-256(token), raw; the raw token is never
// stored. <name> is a marker's 16-byte name, raw, chosen by the server (an
// idempotency key's hash). {g} is a Redis Cluster hash tag, "{" and the two
// hex digits of the first byte of the ID or name and "}": 256 groups. A
// key's epoch is kept in every group, so a record and the epoch it is
// checked against share a hash slot and one script reads both (revoking a
// key is 256 INCRs, whatever its tokens). The "t:", "e:" and "i:" are
// store.RecordKeys, store.EpochKeys and store.MarkerKeys; a test holds this
// text to them.
//
// A record's value is a binary envelope (see store/codec.go): version,
// state (0 live, 1 used, 2 revoked, 3 taken), policy flags, use counters at
// fixed offsets (rewritten in place by the Lua scripts with SETRANGE, which
// keeps the TTL), created/expiry in ms, policy values, the minting key's id
// and epoch, then the bundle sealed with AES-256-GCM under a key derived
// from the token. Used, revoked and taken records shrink to tombstones
// holding only state and key id. A taken tombstone is what Take (a
// refresh) leaves: every read reports it as revoked, Revoke turns it into
// a revoked one, and only Restore, finding it still there, puts the record
// back. Scripts are sent with EVALSHA and loaded again where missing; none
// needs to be installed by a step.
//
// # Layouts
//
//  1. Records, epochs per group, the layout key.
//  2. Taken tombstones (state 3) and markers. A layout-1 binary reads a
//     taken tombstone as a corrupt record, so layout 2 is a version of its
//     own although its step writes nothing: Check refuses to start a
//     layout-1 binary on it. Processes already serving are not checked
//     again: run migrate, then replace every older process; until then an
//     older one answers a corrupt-record error (500) for a token a newer
//     one has refreshed.
//
// # Rules for steps
//
// A step is idempotent and safe to run from several processes at once. A
// step that loads server-side code (Redis Functions) does it on every master
// of a Cluster. The layout version only ever rises: a compare-and-raise
// script writes it after the step has run everywhere.
package migrations
