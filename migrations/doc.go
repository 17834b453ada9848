// Package migrations holds the versioned server-side state that the Redis
// store relies on, and applies it. It is run by `tokensvc migrate`, once per
// deployment, not by every replica at start-up; the server only checks.
//
// # Key schema, layout 2
//
// Every key starts with the configured prefix (default
// redisstore.DefaultPrefix), so a Redis ACL user limited to ~<prefix>* can
// run tokensvc and its migrations:
//
//	<prefix>layout              string  the layout version, written by Apply
//	<prefix>{g}t:<id>           string  one token record, with a TTL
//	<prefix>{g}e:<key id>       string  a partner key's revocation epoch, per group (INCR)
//	<prefix>{g}i:<name>         string  a marker (store PutMarker): at most 512 opaque bytes, with a TTL
//	<prefix>rl:<what>           string  a rate limit's GCRA state, with a TTL (redisstore.Limiter)
//	<prefix>keys                set     the partner key ids in force (SetKeyIDs): a key gone from it is revoked
//	<prefix>{g}h:<id>           list    a token's history (store.Entry), newest last, at most 32, with its record's TTL
//	<prefix>audit               stream  the audit trail (TOKENSVC_AUDIT=redis), capped by XADD MAXLEN ~
//
// <what> is gen:<key id> (minting per partner key) or fail:<client address>
// (the brute-force guard). A limit's value is its theoretical arrival time
// in µs since the Unix epoch, by Redis's clock (TIME); the key expires when
// its bucket is full again and is deleted when a refund fills it. Layout 1
// kept limits at rate:<prefix>rl:<what>, outside the prefix; step 2
// deletes those (GCRA state is disposable).
//
// <id> is the first 16 bytes of SHA-256(token), raw; the raw token is never
// stored. <name> is a marker's 16-byte name, raw, chosen by the server (an
// idempotency key's hash). {g} is a Redis Cluster hash tag, "{" and the two
// hex digits of the first byte of the ID or name and "}": 256 groups. A
// key's epoch is kept in every group, so a record and the epoch it is
// checked against share a hash slot and one script reads both (revoking a
// key is 256 INCRs, whatever its tokens). The "t:", "e:", "i:" and "h:"
// are redisstore.RecordInfix, EpochInfix, MarkerInfix and HistoryInfix,
// "audit" is redisstore.AuditKey; a test holds this text to them.
//
// A history lives in its record's hash slot and is written by the same
// script as the record's change (put creates it with the record's TTL,
// consume appends with RPUSHX and slides it with an idle expiry), so it
// never outlives the record. Its entries are "<Unix ms>|<outcome>|<note>".
// The audit stream is one key: on a Cluster it is on the master that owns
// its slot, and every instance appends to it there.
//
// A record's value is a binary envelope (see store/redisstore/codec.go):
// version, state (0 live, 1 used, 2 revoked, 3 taken), policy flags, use
// counters at fixed offsets (rewritten in place by the Lua scripts with
// SETRANGE, which keeps the TTL), created/expiry in ms, policy values, the
// minting key's id and epoch, then the bundle sealed with AES-256-GCM under
// a key derived from the token. Used, revoked and taken records shrink to
// tombstones holding only state, key id and the fHistory flag (32: the
// record keeps a history). A taken tombstone is what Take
// (a refresh) leaves: every read reports it as revoked, Revoke turns it into
// a revoked one, and only Restore, finding it still there, puts the record
// back. Scripts are sent with EVALSHA and loaded again where missing; none
// needs to be installed by a step.
//
// # Layouts
//
//  1. Records, epochs per group, the layout key.
//
//  2. Taken tombstones (state 3), markers, the set of key ids, and rate
//     limits inside the prefix (the step deletes the old rate:<prefix>rl:* keys on every
//     master). A layout-1 binary reads a taken tombstone as a corrupt
//     record and keeps its limits outside the prefix: Check refuses to
//     start a layout-1 binary on layout 2. Processes already serving are not checked
//     again: run migrate, then replace every older process; until then an
//     older one answers a corrupt-record error (500) for a token a newer
//     one has refreshed.
//
//     Histories (the h: lists and the fHistory flag) and the audit stream
//     came within layout 2: both kinds of binary read each other's
//     records (an older one ignores the flag, and its scripts drop it from
//     the tombstones they write), so a rolling upgrade needs no migrate
//     and a rollback no downgrade; tokens that an older binary touches
//     just stop growing their history.
//
// # Rules for steps
//
// A step is idempotent and safe to run from several processes at once. A
// step that loads server-side code (Redis Functions) does it on every master
// of a Cluster. The layout version only ever rises: a compare-and-raise
// script writes it after the step has run everywhere.
package migrations
