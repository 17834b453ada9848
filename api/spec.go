package api

import _ "embed"

// Spec is the OpenAPI document this package was generated from, byte for byte.
//
//go:embed openapi.yaml
var Spec []byte
