package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokensvc/tokensvc/server/ratelimit"
)

// Key is a partner key as the rest of the service sees it. It never holds a
// secret, only what is needed to decide what the partner may do.
type Key struct {
	// ID names the partner in tokens, logs and the admin API. When the source
	// gives none it is derived from the key's secrets (see the package
	// documentation) and is stable across reloads.
	ID string
	// Origins are the browser origin patterns allowed for the key's client
	// secrets and for its tokens at /verify. Empty means any origin.
	Origins []string
	// MaxTTL caps the lifetime of tokens minted with the key; 0 means the
	// service's own limit.
	MaxTTL time.Duration
	// DefaultTTL is the lifetime of a token when the request names none; 0
	// means the service's own default.
	DefaultTTL time.Duration
	// RateLimit caps how often the key may mint tokens; zero means the
	// service's default.
	RateLimit ratelimit.Limit
	// Disabled keys authenticate nothing but are still listed.
	Disabled bool
	// HasServerSecret and HasClientSecret tell which kinds of secret the key
	// has. A plain-string key has both.
	HasServerSecret, HasClientSecret bool
	// Source is where the key came from: "inline", a file:// path, or the
	// key server URL with its userinfo and query redacted.
	Source string
}

// HashSecret returns the form of secret that may be written in a key source
// instead of the secret itself: "sha256:" followed by the lower-case hex
// SHA-256 of the secret. The argument is always taken as a clear secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

const hashPrefix = "sha256:"

// secretHash turns a configured secret, clear or "sha256:<hex>", into the
// SHA-256 of the clear secret. Its errors never quote the secret.
func secretHash(s string) ([32]byte, error) {
	if len(s) < len(hashPrefix) || !strings.EqualFold(s[:len(hashPrefix)], hashPrefix) {
		return sha256.Sum256([]byte(s)), nil
	}
	var h [32]byte
	b, err := hex.DecodeString(s[len(hashPrefix):])
	if err != nil || len(b) != len(h) {
		return h, errors.New(`a secret starting with "sha256:" must go on with 64 hex digits`)
	}
	copy(h[:], b)
	return h, nil
}

// deriveID names a key that has no id: "k_" and 12 hex digits of the SHA-256
// of its distinct secret hashes, sorted. Hashing the hashes makes the id the
// same whether the secrets were written in clear or as sha256: values.
func deriveID(hashes [][32]byte) string {
	sorted := slices.Clone(hashes)
	slices.SortFunc(sorted, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	h := sha256.New()
	for _, s := range sorted {
		h.Write(s[:])
	}
	return "k_" + hex.EncodeToString(h.Sum(nil))[:12]
}

// entry is a key in a snapshot, with its compiled origin patterns.
type entry struct {
	Key
	patterns []pattern
}

// allows reports whether the key's origins allow origin (an Origin header).
func (e *entry) allows(origin string) bool {
	if len(e.patterns) == 0 {
		return true
	}
	o := parseOrigin(origin)
	for _, p := range e.patterns {
		if p.match(o) {
			return true
		}
	}
	return false
}

// public returns a copy the caller may modify.
func (e *entry) public() Key {
	k := e.Key
	k.Origins = slices.Clone(k.Origins)
	return k
}

// secretRef is what a secret hash leads to in a snapshot.
type secretRef struct {
	hash   [32]byte
	key    int // index in snapshot.keys
	server bool
	client bool
}

// buildEntries hashes the secrets of raw keys and checks the set as a whole:
// ids and secrets are unique. Errors name keys, never secrets.
func buildEntries(raw []rawKey, source string) ([]entry, map[[32]byte]secretRef, error) {
	if len(raw) == 0 {
		return nil, nil, errors.New("no keys")
	}
	entries := make([]entry, 0, len(raw))
	secrets := make(map[[32]byte]secretRef, 2*len(raw))
	ids := make(map[string]int, len(raw))
	for _, r := range raw {
		e := entry{Key: Key{ID: r.id, MaxTTL: r.maxTTL, DefaultTTL: r.defaultTTL, RateLimit: r.rateLimit, Disabled: r.disabled, Source: source}}
		if e.MaxTTL > 0 && e.DefaultTTL > e.MaxTTL {
			return nil, nil, fmt.Errorf("%s: default_ttl %s is above max_ttl %s", r.label, e.DefaultTTL, e.MaxTTL)
		}
		for _, o := range r.origins {
			p, err := compilePattern(o)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: origin %q: %w", r.label, o, err)
			}
			e.Origins = append(e.Origins, o)
			e.patterns = append(e.patterns, p)
		}
		refs := map[[32]byte]secretRef{}
		var hashes [][32]byte
		for _, list := range []struct {
			secrets []string
			server  bool
		}{{r.serverSecrets, true}, {r.clientSecrets, false}} {
			for _, s := range list.secrets {
				h, err := secretHash(s)
				if err != nil {
					return nil, nil, fmt.Errorf("%s: %w", r.label, err)
				}
				ref := refs[h]
				ref.hash = h
				ref.server = ref.server || list.server
				ref.client = ref.client || !list.server
				refs[h] = ref
				hashes = append(hashes, h)
			}
		}
		if len(refs) == 0 {
			return nil, nil, fmt.Errorf("%s: no server_secret or client_secret", r.label)
		}
		e.HasServerSecret, e.HasClientSecret = len(r.serverSecrets) > 0, len(r.clientSecrets) > 0
		if e.ID == "" {
			e.ID = deriveID(hashes)
		}
		idx := len(entries)
		for h, ref := range refs {
			if other, dup := secrets[h]; dup {
				if entries[other.key].ID == e.ID {
					return nil, nil, fmt.Errorf("key %q is listed twice", e.ID)
				}
				return nil, nil, fmt.Errorf("keys %q and %q share a secret", entries[other.key].ID, e.ID)
			}
			ref.key = idx
			secrets[h] = ref
		}
		if _, dup := ids[e.ID]; dup {
			return nil, nil, fmt.Errorf("duplicate key id %q", e.ID)
		}
		ids[e.ID] = idx
		entries = append(entries, e)
	}
	return entries, secrets, nil
}
