package server

import "github.com/tokensvc/tokensvc/server/keys"

// panicPartners is a registry whose Authenticate panics.
type panicPartners struct{ Partners }

func (panicPartners) Authenticate(string, string) (keys.Key, keys.SecretKind, error) { panic("boom") }
