package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/store"
)

// Bounds of the per-token policy parameters of /generate.
const (
	maxUses        = 1_000_000
	maxReuseGrace  = 300 // seconds
	maxPrivateKeys = 64
)

// policy is what /generate's query parameters ask of a token.
type policy struct {
	uses    uint32
	grace   time.Duration
	idle    time.Duration
	private []string
}

func invalidParam(format string, args ...any) *Error {
	return newError(api.ErrorErrorBadRequest, format, args...)
}

// readPolicy checks the policy parameters against their bounds.
func readPolicy(p api.GenerateParams, ttl time.Duration) (policy, error) {
	var pol policy
	if p.Uses != nil {
		if *p.Uses < 1 || *p.Uses > maxUses {
			return pol, invalidParam("uses must be between 1 and %d", maxUses)
		}
		pol.uses = uint32(*p.Uses)
	}
	if p.ReuseGrace != nil {
		if p.Uses == nil {
			return pol, invalidParam("reuse_grace needs uses")
		}
		if *p.ReuseGrace < 1 || *p.ReuseGrace > maxReuseGrace {
			return pol, invalidParam("reuse_grace must be between 1 and %d seconds", maxReuseGrace)
		}
		pol.grace = time.Duration(*p.ReuseGrace) * time.Second
	}
	if p.IdleTtl != nil {
		if *p.IdleTtl < 1 || time.Duration(*p.IdleTtl)*time.Second > ttl {
			return pol, invalidParam("idle_ttl must be between 1 second and the token's ttl (%d seconds)", int64(ttl/time.Second))
		}
		pol.idle = time.Duration(*p.IdleTtl) * time.Second
	}
	if p.Private != nil && *p.Private != "" {
		for _, name := range strings.Split(*p.Private, ",") {
			if name = strings.TrimSpace(name); name != "" {
				pol.private = append(pol.private, name)
			}
		}
		if len(pol.private) > maxPrivateKeys {
			return pol, invalidParam("private names more than %d fields", maxPrivateKeys)
		}
	}
	return pol, nil
}

// apply sets the policy on a record, splitting the bundle into its public
// and private fields.
func (pol policy) apply(rec *store.Record, bundle json.RawMessage) error {
	rec.MaxUses, rec.ReuseGrace, rec.IdleTTL = pol.uses, pol.grace, pol.idle
	pub, priv, err := splitBundle(bundle, pol.private)
	rec.Bundle, rec.Private = pub, priv
	return err
}

// splitBundle moves the named top-level fields of a compact JSON object into
// a second object, keeping the order and the exact text of every value.
// private is nil when no named field is present.
func splitBundle(bundle json.RawMessage, names []string) (public, private json.RawMessage, err error) {
	if len(names) == 0 {
		return bundle, nil, nil
	}
	isPrivate := make(map[string]bool, len(names))
	for _, n := range names {
		isPrivate[n] = true
	}
	dec := json.NewDecoder(bytes.NewReader(bundle))
	if _, err := dec.Token(); err != nil { // {
		return nil, nil, err
	}
	var pub, priv bytes.Buffer
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, nil, err
		}
		w := &pub
		if isPrivate[tok.(string)] {
			w = &priv
		}
		if w.Len() > 0 {
			w.WriteByte(',')
		}
		name, _ := json.Marshal(tok.(string))
		w.Write(name)
		w.WriteByte(':')
		w.Write(val)
	}
	if priv.Len() == 0 {
		return bundle, nil, nil
	}
	return wrapObject(pub.Bytes()), wrapObject(priv.Bytes()), nil
}

func wrapObject(members []byte) json.RawMessage {
	out := make([]byte, 0, len(members)+2)
	out = append(out, '{')
	out = append(out, members...)
	return append(out, '}')
}

// mergeBundle joins public and private fields back into one object.
func mergeBundle(public, private json.RawMessage) json.RawMessage {
	switch {
	case len(private) <= 2:
		return public
	case len(public) <= 2:
		return private
	}
	out := make([]byte, 0, len(public)+len(private))
	out = append(out, public[:len(public)-1]...)
	out = append(out, ',')
	return append(out, private[1:]...)
}
