// Package keys is the registry of partner API keys: which secrets may mint
// tokens (the x-api-key header of POST /generate) and from which browser
// origins. Key objects and sources follow Jitsu's API keys configuration,
// with a few additions of tokensvc's own.
//
// # Key objects
//
// Every field is optional, but a key needs at least one secret:
//
//	id             string; when missing, derived from the secrets (below)
//	server_secret  string or list of strings; accepted from any caller
//	client_secret  string or list of strings; accepted only with an Origin
//	               header that origins allow
//	origins        list of origin patterns (table below); empty means any
//	               origin, but a client secret still needs an Origin header
//	max_ttl        cap on the token lifetime: "30m", "1h" or whole seconds
//	default_ttl    token lifetime when the request names none; <= max_ttl
//	rate_limit     how often the key may mint: "100/s", "6000/m", "off"
//	disabled       true: the key authenticates nothing but is still listed
//
// A list of secrets lets a partner rotate without downtime: add the new
// secret next to the old one, switch, then remove the old one. A secret is
// written in clear or as "sha256:" and the 64 hex digits of its SHA-256 (see
// HashSecret), so a key file need not hold usable secrets. Presenting the
// "sha256:" form as x-api-key does not authenticate. Secrets are trimmed of
// surrounding white space. Unknown fields are an error, so a misspelt
// "origins" cannot silently open a key to every origin.
//
// A key without an id gets "k_" and the first 12 hex digits of the SHA-256
// of its distinct secret hashes, sorted: the id is stable across reloads and
// the same whether the secrets are written in clear or hashed.
//
// Two keys with the same id, or one secret in two keys, are a configuration
// error naming the ids. Errors and logs never include a secret.
//
// # Sources
//
// New takes one string, the spec, in one of these forms:
//
//   - A YAML list of key objects, a JSON array of them (JSON is YAML), or an
//     object {"tokens": [...]}. A spec is read as a document when it
//     contains a line break or starts with "[", "{", "- " or "tokens:".
//   - A plain string, or a comma-separated list of them. Each becomes a key
//     whose secret is both a server secret and a client secret for any
//     origin, with a derived id. Jitsu reads a plain string as a client
//     secret; accepting it from backends too is a superset that keeps
//     server-to-server callers working. A list item that is a string rather
//     than an object is read the same way. Secrets in this form cannot
//     contain a comma or start with "[", "{" or "- ": use a YAML list.
//   - file://PATH of a JSON or YAML file holding {"tokens": [...]} (Jitsu's
//     payload) or a bare list. file:///etc/tokensvc/keys.json is absolute.
//     Run re-reads it when its size or modification time changes and
//     installs it when its content changed.
//   - An http:// or https:// URL of a key server answering
//     {"tokens": [...]}. Run polls it with If-None-Match and
//     If-Modified-Since taken from the last ETag and Last-Modified; 304 means
//     unchanged. Userinfo in the URL is sent as basic auth. At most 3
//     redirects are followed, and never one from https to http: either is
//     a failed fetch (below), not a key set.
//
// Payloads are capped at 8 MiB. A failed fetch, a parse or validation error,
// or an empty set keeps the last good set, is logged and shows in
// Status.LastError; the first load must succeed. A key removed at the source
// stops working at the next successful reload.
//
// # Origins
//
// A pattern is compared with the host and port of the Origin header. The
// scheme is ignored on both sides, so a pattern may be written with or
// without "https://"; matching is case-insensitive; a pattern without a port
// matches any port, one with a port needs that port (an Origin without a
// port has its scheme's default port); the origin "null" and an unparsable
// origin match only "*". '*' may appear once, at the start or the end of the
// host. MatchOrigin implements this table:
//
//	| pattern               | Origin header                 | match |
//	|-----------------------|-------------------------------|-------|
//	| *                     | https://anything.example      | yes   |
//	| *                     | null                          | yes   |
//	| abc*                  | https://abc.com               | yes   |
//	| abc*                  | https://abcd.com              | yes   |
//	| abc*                  | https://xabc.com              | no    |
//	| *abc.com              | https://abc.com               | yes   |
//	| *abc.com              | https://xyzabc.com            | yes   |
//	| *abc.com              | https://a.abc.com             | yes   |
//	| *abc.com              | https://abc.com.evil.io       | no    |
//	| *.yourdomain.com      | https://a.yourdomain.com      | yes   |
//	| *.yourdomain.com      | https://a.b.yourdomain.com    | yes   |
//	| *.yourdomain.com      | https://yourdomain.com        | no    |
//	| *.yourdomain.com      | https://evilyourdomain.com    | no    |
//	| efg.com               | https://efg.com               | yes   |
//	| efg.com               | http://efg.com:8080           | yes   |
//	| efg.com               | https://www.efg.com           | no    |
//	| efg.com               | https://efg.com.evil.io       | no    |
//	| https://efg.com       | http://efg.com                | yes   |
//	| EFG.com               | https://efg.COM               | yes   |
//	| efg.com:8443          | https://efg.com:8443          | yes   |
//	| efg.com:8443          | https://efg.com               | no    |
//	| efg.com:443           | https://efg.com               | yes   |
//	| *.yourdomain.com:8443 | https://a.yourdomain.com:8443 | yes   |
//	| *.yourdomain.com:8443 | https://a.yourdomain.com      | no    |
//	| localhost             | http://localhost:3000         | yes   |
//	| [::1]:8080            | http://[::1]:8080             | yes   |
//	| efg.com               | null                          | no    |
//	| abc*                  | null                          | no    |
//	| efg.com               | https://efg.com/path          | no    |
//
// A server secret with origins still accepts any caller: origins then only
// decide where the tokens it mints may be verified (Registry.OriginAllowed).
package keys
