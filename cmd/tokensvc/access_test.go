package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/server/spectest"
	"github.com/tokensvc/tokensvc/store/storetest"
)

// wantAccess is the access model as this test expects it, written out by
// hand: a row per role (server.Roles order), a cell per operation
// (server.Ops order), in the words of SECURITY.md. TestAccessTable checks
// that the server's table says the same and that SECURITY.md shows it;
// TestAccessMatrix checks every cell over HTTP.
var wantAccess = [][]string{
	// mint, verify, private fields, batch, refresh, look up, revoke, /auth, /auth private, admin ×4
	{"403 `invalid_api_key`", "403 `invalid_token`", "403 `invalid_token`", "400 `invalid_body`", "403 `invalid_token`", "403 `invalid_api_key`", "403 `invalid_api_key`", "401 `missing_token`", "401 `missing_token`", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`"},
	{"403 `invalid_api_key`", "200", "withheld", "200", "200", "403 `invalid_api_key`", "403 `invalid_api_key`", "200", "withheld", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`"},
	{"403 `invalid_api_key`", originCell, "withheld", batchOriginCell, originCell, "403 `invalid_api_key`", "403 `invalid_api_key`", "200", "withheld", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`"},
	{"200", "200", "own tokens, else withheld", "200", "200", "200 own tokens, else 404 `not_found`", "204 own tokens, else 404 `not_found`", "200", "withheld", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`"},
	{"200", originCell, "withheld", batchOriginCell, originCell, "403 `server_secret_required`", "403 `server_secret_required`", "200", "withheld", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`"},
	{"403 `invalid_api_key`", "200", "withheld", "200", "200", "403 `invalid_api_key`", "403 `invalid_api_key`", "200", "200", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`", "401 `unauthorized`"},
	{"403 `invalid_api_key`", "403 `invalid_token`", "403 `invalid_token`", "400 `invalid_body`", "403 `invalid_token`", "403 `invalid_api_key`", "403 `invalid_api_key`", "401 `missing_token`", "401 `missing_token`", "200", "200", "204", "200"},
}

const (
	originCell      = "200 if the token's key allows the Origin, else 403 `origin_not_allowed`"
	batchOriginCell = "200 if the token's key allows the Origin, else `origin_not_allowed` for that token"

	securityBegin = "<!-- access:begin (generated from server/access.go by TestAccessTable; UPDATE_SECURITY=1 rewrites it) -->\n"
	securityEnd   = "<!-- access:end -->"
)

// The server's table is the one this test expects, cell for cell, and
// SECURITY.md shows it. Run `UPDATE_SECURITY=1 go test -run AccessTable
// ./cmd/tokensvc` after changing the table (and wantAccess).
func TestAccessTable(t *testing.T) {
	if len(wantAccess) != len(server.Roles()) {
		t.Fatalf("wantAccess has %d rows, the server %d roles", len(wantAccess), len(server.Roles()))
	}
	for _, r := range server.Roles() {
		if len(wantAccess[r]) != len(server.Ops()) {
			t.Fatalf("wantAccess row %q has %d cells, the server %d operations", r, len(wantAccess[r]), len(server.Ops()))
		}
		for _, op := range server.Ops() {
			if got, want := server.Cell(op, r), wantAccess[r][op]; got != want {
				t.Errorf("cell (%s, %s) = %q, want %q", r, op, got, want)
			}
		}
	}
	syncSection(t, "../../SECURITY.md", securityBegin, securityEnd, server.AccessTable(), "UPDATE_SECURITY",
		"run UPDATE_SECURITY=1 go test -run AccessTable ./cmd/tokensvc")
}

// The partner keys of the matrix: "web" mints the tokens each cell is
// probed with, "other" the tokens of another partner, "victim" the one
// whose tokens the admin revokes.
const matrixKeys = `[
 {"id": "web", "server_secret": "ss-web-123", "client_secret": "cs-web-123", "origins": ["*.example.com"]},
 {"id": "other", "server_secret": "ss-other-456", "origins": ["https://partner-b.test"]},
 {"id": "victim", "server_secret": "ss-victim-789"}
]`

const (
	matrixAdmin   = "admin-token-for-the-matrix-0123456789"
	matrixGateway = "gateway-secret-for-the-matrix-0123456789"
	matrixOrigin  = "https://app.example.com"
)

// credentialsOf are the headers a role's caller sends, besides its token.
func credentialsOf(r server.Role) []string {
	switch r {
	case server.BrowserHolder:
		return []string{"Origin: " + matrixOrigin}
	case server.PartnerServer:
		return []string{"x-api-key: ss-web-123"}
	case server.PartnerClient:
		return []string{"x-api-key: cs-web-123", "Origin: " + matrixOrigin}
	case server.Gateway:
		return []string{"X-Gateway-Secret: " + matrixGateway}
	case server.Admin:
		return []string{"X-Admin-Token: " + matrixAdmin}
	}
	return nil
}

// holdsToken says whether a role's caller presents a token.
func holdsToken(r server.Role) bool { return r != server.Anonymous && r != server.Admin }

// outcome is what one probe saw.
type outcome struct {
	status  int
	code    string // the error code of a refusal, or of the batch's one result
	private bool   // the private field came back (body or X-Token-Auth)
}

func (o outcome) String() string {
	return fmt.Sprintf("%d %q private=%v", o.status, o.code, o.private)
}

// Every cell of the access table, over HTTP, against the embedded store
// and a real Redis: each probe mints a fresh token (of "web", or "other"
// for the second half of a conditional cell) and asks for the cell's
// operation with the row's credentials.
func TestAccessMatrix(t *testing.T) {
	stores := map[string]func(t *testing.T) env{
		"memory": func(*testing.T) env { return env{} },
		"redis": func(t *testing.T) env {
			storetest.NeedRedis(t, redisURL)
			prefix := freshPrefix()
			migrateRedis(t, prefix)
			return env{"TOKENSVC_REDIS_URL": redisURL, "TOKENSVC_REDIS_PREFIX": prefix, "TOKENSVC_IDEMPOTENCY_SECRET": strings.Repeat("i", 32)}
		},
	}
	for name, base := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := base(t)
			e["TOKENSVC_API_KEYS"] = matrixKeys
			e["TOKENSVC_ADMIN_TOKEN"] = matrixAdmin
			e["TOKENSVC_FORWARD_SECRET"] = matrixGateway
			e["TOKENSVC_FORWARD_FIELDS"] = "userId,auth"
			e["TOKENSVC_VERIFY_FAILURE_RATE"] = "off"
			m := &matrix{in: start(t, e), client: &http.Client{Transport: spectest.New(t).Transport(t, nil)}}
			for _, r := range server.Roles() {
				for _, op := range server.Ops() {
					t.Run(fmt.Sprintf("%s/%s", r, op), func(t *testing.T) { m.check(t, op, r, wantAccess[r][op]) })
				}
			}
		})
	}
}

type matrix struct {
	in     *instance
	client *http.Client // checks every answer against openapi.yaml
}

// check probes one cell and compares what happened with the cell's words.
func (m *matrix) check(t *testing.T, op server.Op, r server.Role, cell string) {
	own := m.probe(t, op, r, "ss-web-123")
	other := func() outcome { return m.probe(t, op, r, "ss-other-456") }
	success := http.StatusOK
	if op == server.OpRevoke || op == server.OpAdminRevokeToken {
		success = http.StatusNoContent
	}
	wantOK := func(o outcome, what string) {
		if o.status != success || o.code != "" {
			t.Errorf("%s: got %v, want %d", what, o, success)
		}
	}
	wantRefused := func(o outcome, words, what string) {
		var status int
		var code string
		if _, err := fmt.Sscanf(strings.ReplaceAll(words, "`", ""), "%d %s", &status, &code); err != nil {
			t.Fatalf("cell words %q: %v", words, err)
		}
		if o.status != status || o.code != code {
			t.Errorf("%s: got %v, want %d %s", what, o, status, code)
		}
	}
	private := op == server.OpReadPrivate || op == server.OpForwardPrivate
	switch {
	case cell == "200" || cell == "204":
		wantOK(own, "the key's own token")
		if private && !own.private {
			t.Errorf("private fields withheld: %v", own)
		}
	case cell == "withheld":
		wantOK(own, "the key's own token")
		if own.private {
			t.Errorf("private fields shown: %v", own)
		}
	case cell == "own tokens, else withheld":
		if wantOK(own, "own token"); !own.private {
			t.Errorf("own token: private fields withheld: %v", own)
		}
		if o := other(); o.status != success || o.private {
			t.Errorf("another key's token: got %v, want %d without private fields", o, success)
		}
	case strings.Contains(cell, " own tokens, else "):
		wantOK(own, "own token")
		wantRefused(other(), cell[strings.Index(cell, "else ")+5:], "another key's token")
	case cell == originCell:
		wantOK(own, "a token whose key allows the Origin")
		wantRefused(other(), "403 origin_not_allowed", "a token whose key does not allow the Origin")
	case cell == batchOriginCell:
		wantOK(own, "a token whose key allows the Origin")
		if o := other(); o.status != 200 || o.code != "origin_not_allowed" {
			t.Errorf("a token whose key does not allow the Origin: got %v, want its result origin_not_allowed", o)
		}
	default:
		wantRefused(own, cell, "the request")
	}
}

// probe mints a token with minter (a server secret), then asks for op
// with r's credentials.
func (m *matrix) probe(t *testing.T, op server.Op, r server.Role, minter string) outcome {
	t.Helper()
	res := m.do(t, "POST", "/generate?private=auth", `{"userId":"u-1","auth":"partner-secret"}`, "x-api-key: "+minter, "Content-Type: application/json")
	if res.status != 200 {
		t.Fatalf("mint: %d %s", res.status, res.body)
	}
	var minted struct{ Token, TokenID string }
	var raw map[string]any
	_ = json.Unmarshal(res.body, &raw)
	minted.Token, _ = raw["token"].(string)
	minted.TokenID, _ = raw["token_id"].(string)

	h := credentialsOf(r)
	if holdsToken(r) {
		h = append(h, "x-api-token: "+minted.Token)
	}
	var got response
	switch op {
	case server.OpMint:
		got = m.do(t, "POST", "/generate", `{"a":1}`, append(h, "Content-Type: application/json")...)
	case server.OpVerify, server.OpReadPrivate:
		got = m.do(t, "GET", "/verify", "", h...)
	case server.OpBatch:
		body := `{"tokens":[]}`
		if holdsToken(r) {
			body = `{"tokens":["` + minted.Token + `"]}`
		}
		got = m.do(t, "POST", "/verify/batch", body, append(h, "Content-Type: application/json")...)
		var b struct {
			Results []struct {
				Error  string
				Bundle map[string]any
			}
		}
		if got.status == 200 && json.Unmarshal(got.body, &b) == nil && len(b.Results) == 1 {
			return outcome{status: 200, code: b.Results[0].Error, private: b.Results[0].Bundle["auth"] != nil}
		}
	case server.OpRefresh:
		got = m.do(t, "POST", "/refresh", "", h...)
	case server.OpLookup:
		got = m.do(t, "GET", "/tokens/"+minted.TokenID, "", h...)
	case server.OpRevoke:
		got = m.do(t, "DELETE", "/tokens/"+minted.TokenID, "", h...)
	case server.OpForward, server.OpForwardPrivate:
		got = m.do(t, "GET", "/auth", "", h...)
		return outcome{status: got.status, code: got.code(), private: got.header.Get("X-Token-Auth") != ""}
	case server.OpAdminListKeys:
		got = m.do(t, "GET", "/admin/keys", "", h...)
	case server.OpAdminReload:
		got = m.do(t, "POST", "/admin/reload", "", h...)
	case server.OpAdminRevokeToken:
		got = m.do(t, "DELETE", "/admin/tokens/"+minted.TokenID, "", h...)
	case server.OpAdminRevokeKeyTokens:
		got = m.do(t, "POST", "/admin/keys/victim/revoke-tokens", "", h...)
	default:
		t.Fatalf("no probe for %s", op)
	}
	return outcome{status: got.status, code: got.code(), private: strings.Contains(string(got.body), "partner-secret")}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// code is the error code of a JSON error answer, "" for any other.
func (r response) code() string {
	if r.status < 400 {
		return ""
	}
	var e struct{ Error string }
	_ = json.Unmarshal(r.body, &e)
	return e.Error
}

// do sends one request, headers given as "Name: value".
func (m *matrix) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, m.in.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	res, err := m.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}
