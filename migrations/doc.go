// Package migrations holds the versioned server-side state that the Redis
// store relies on, and applies it. It is run by `tokensvc migrate`, once per
// deployment, not by every replica at start-up; the server only checks.
//
// # Key schema, layout 2
//
// Every key starts with the configured prefix (default store.DefaultPrefix), so a
// Redis ACL user limited to ~<prefix>* can run tokensvc and its migrations:
//
//	<prefix>layout              string  the layout version, written by Apply
//	<prefix>{g}t:<id>           string  one token record, with a TTL
//	<prefix>{g}e:<key id>       string  a partner key's revocation epoch, per group (INCR)
//	<prefix>rl:<what>           string  a rate limit's GCRA state, with a TTL (store.Limiter)
//
// <what> is gen:<key id> (minting per partner key) or fail:<client address>
// (the brute-force guard). A limit's value is its theoretical arrival time
// in µs since the Unix epoch, by Redis's clock (TIME); the key expires when
// its bucket is full again and is deleted when a refund fills it. Layout 1
// kept limits at rate:<prefix>rl:<what>, outside the prefix; step 2
// deletes those (GCRA state is disposable).
//
// <id> is the first 16 bytes of SHA-256(token), raw; the raw token is never
// stored. {g} is a Redis Cluster hash tag, "{" and the two hex digits of the
// ID's first byte and "}": 256 groups. A key's epoch is kept in every group,
// so a record and the epoch it is checked against share a hash slot and one
// script reads both (revoking a key is 256 INCRs, whatever its tokens). A record's value is a binary envelope (see store/codec.go): version,
// state (live, used, revoked), policy flags, use counters at fixed offsets
// (rewritten in place by the Lua scripts with SETRANGE, which keeps the TTL),
// created/expiry in ms, policy values, the minting key's id and epoch, then
// the bundle sealed with AES-256-GCM under a key derived from the token. Used
// and revoked records shrink to tombstones holding only state and key id.
// Scripts are sent with EVALSHA and loaded again where missing; none needs
// to be installed by a step.
//
// # Rules for steps
//
// A step is idempotent and safe to run from several processes at once. A
// step that loads server-side code (Redis Functions) does it on every master
// of a Cluster. The layout version only ever rises: a compare-and-raise
// script writes it after the step has run everywhere.
package migrations
