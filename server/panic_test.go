package server

import "github.com/tokensvc/tokensvc/server/keys"

type panicPartners struct{}

func (panicPartners) Authenticate(string, string) (keys.Key, error) { panic("boom") }
