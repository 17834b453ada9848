// Package api is generated from openapi.yaml by oapi-codegen: the types, the
// strict Echo server interface, a client and the embedded spec. Do not edit
// it by hand; change openapi.yaml and run `go generate ./...`.
package api

//go:generate go tool oapi-codegen -config oapi-codegen.yaml ../openapi.yaml
//go:generate cp ../openapi.yaml openapi.yaml
