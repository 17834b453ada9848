// Package migrations holds the versioned server-side state that the Redis
// store relies on, and applies it. It is run by `tokensvc migrate`, once per
// deployment, not by every replica at start-up; the server only checks.
//
// # Key schema, layout 1
//
// Every key starts with the configured prefix (default "tokensvc:"):
//
//	<prefix>layout          string  the layout version, written by Apply
//	<prefix>t:<id>          string  one token record, with a TTL
//
// <id> is the first 16 bytes of SHA-256(token), raw; the raw token is never
// stored. The value is a binary envelope (see package store): version byte,
// created/expires Unix milliseconds, minting key id, then the bundle bytes as
// the partner sent them.
//
// # Rules for steps
//
// A step is idempotent and safe to run from several processes at once. A
// step that loads server-side code (Redis Functions) does it on every master
// of a Cluster. The layout version only ever rises: a compare-and-raise
// script writes it after the step has run everywhere.
package migrations
