package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/tokensvc/tokensvc/api"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/store"
)

// This file is the access model: who may see and do what. The table below
// is the only place that decides it; SECURITY.md shows it (rendered by
// AccessTable, checked by a test) and one table-driven test walks every
// cell over HTTP. A new operation, field or credential adds its column or
// row here first.

// Role is a row of the access table: whom a request speaks for, told by
// identify from the credentials its operation reads.
type Role uint8

// Roles, from no credential to the operator.
const (
	Anonymous     Role = iota // no credential
	Holder                    // a token, sent by a server (no Origin)
	BrowserHolder             // a token, sent by a browser (with Origin)
	PartnerServer             // a partner key's server secret (with a token where the operation needs one)
	PartnerClient             // a partner key's client secret from an origin the key allows (likewise)
	Gateway                   // /auth called with the gateway secret (and a token)
	Admin                     // the admin token
	numRoles
)

var roleNames = [numRoles]string{
	"no credential",
	"token holder, server-side",
	"token holder in a browser (`Origin`)",
	"partner server secret",
	"partner client secret, allowed origin",
	"gateway at `/auth` with `X-Gateway-Secret`",
	"admin token",
}

func (r Role) String() string { return roleNames[r] }

// Op is a column of the access table: one thing a caller may ask for.
type Op uint8

// Operations.
const (
	OpMint                 Op = iota // POST /generate
	OpVerify                         // GET /verify: the public fields
	OpReadPrivate                    // the private fields, at /verify and /verify/batch
	OpBatch                          // POST /verify/batch
	OpRefresh                        // POST /refresh
	OpLookup                         // GET /tokens/{id}
	OpRevoke                         // DELETE /tokens/{id}
	OpForward                        // /auth: pass, with public fields as headers
	OpForwardPrivate                 // /auth: private fields as headers
	OpAdminListKeys                  // GET /admin/keys
	OpAdminReload                    // POST /admin/reload
	OpAdminRevokeToken               // DELETE /admin/tokens/{id}
	OpAdminRevokeKeyTokens           // POST /admin/keys/{id}/revoke-tokens
	numOps
)

var opNames = [numOps]string{
	"mint", "verify (public fields)", "private fields", "batch", "refresh",
	"look up", "revoke", "`/auth` (public headers)", "`/auth` private headers",
	"admin: list keys", "admin: reload", "admin: revoke token", "admin: revoke key's tokens",
}

func (o Op) String() string { return opNames[o] }

// Ops lists every operation, in the order of the table's columns.
func Ops() []Op {
	out := make([]Op, numOps)
	for i := range out {
		out[i] = Op(i)
	}
	return out
}

// Roles lists every role, in the order of the table's rows.
func Roles() []Role {
	out := make([]Role, numRoles)
	for i := range out {
		out[i] = Role(i)
	}
	return out
}

// verdict is how a cell decides.
type verdict uint8

const (
	refuse   verdict = iota // answer the cell's error
	allow                   // go ahead
	own                     // go ahead on tokens the caller's key minted; others: the cell's error
	origin                  // go ahead when the token's minting key allows the caller's Origin; else origin_not_allowed
	withhold                // not an error: the request goes on without it (private fields left out)
	ownElse                 // own tokens: go ahead; others: withheld
)

// cell is one decision of the table.
type cell struct {
	v    verdict
	code api.ErrorError // refuse, own: the refusal
}

var (
	ok         = cell{v: allow}
	byOrigin   = cell{v: origin}
	withheld   = cell{v: withhold}
	ownOrWith  = cell{v: ownElse}
	noKey      = cell{v: refuse, code: api.ErrorErrorInvalidApiKey}
	noToken    = cell{v: refuse, code: api.ErrorErrorInvalidToken}
	noBody     = cell{v: refuse, code: api.ErrorErrorInvalidBody}
	noForward  = cell{v: refuse, code: api.ErrorErrorMissingToken}
	noAdmin    = cell{v: refuse, code: api.ErrorErrorUnauthorized}
	serverOnly = cell{v: refuse, code: api.ErrorErrorServerSecretRequired}
	ownOr404   = cell{v: own, code: api.ErrorErrorNotFound}
)

// adminColumn is every role's cell for an admin operation.
var adminColumn = [numRoles]cell{noAdmin, noAdmin, noAdmin, noAdmin, noAdmin, noAdmin, ok}

// table is the access model. Rows are listed per column, in Role order:
//
//	Anonymous, Holder, BrowserHolder, PartnerServer, PartnerClient, Gateway, Admin
//
// A credential an operation does not read is ignored, so its row is
// decided by the others it carries: the gateway secret counts at /auth
// only, the admin token on the admin API only, partner keys and Origin
// everywhere but /auth (whose caller is a gateway, a server).
var table = [numOps][numRoles]cell{
	OpMint:                 {noKey, noKey, noKey, ok, ok, noKey, noKey},
	OpVerify:               {noToken, ok, byOrigin, ok, byOrigin, ok, noToken},
	OpReadPrivate:          {noToken, withheld, withheld, ownOrWith, withheld, withheld, noToken},
	OpBatch:                {noBody, ok, byOrigin, ok, byOrigin, ok, noBody},
	OpRefresh:              {noToken, ok, byOrigin, ok, byOrigin, ok, noToken},
	OpLookup:               {noKey, noKey, noKey, ownOr404, serverOnly, noKey, noKey},
	OpRevoke:               {noKey, noKey, noKey, ownOr404, serverOnly, noKey, noKey},
	OpForward:              {noForward, ok, ok, ok, ok, ok, noForward},
	OpForwardPrivate:       {noForward, withheld, withheld, withheld, withheld, ok, noForward},
	OpAdminListKeys:        adminColumn,
	OpAdminReload:          adminColumn,
	OpAdminRevokeToken:     adminColumn,
	OpAdminRevokeKeyTokens: adminColumn,
}

// errWithheld is a withheld cell's answer: not sent to anyone, the caller
// goes on without what it asked for.
var errWithheld = errors.New("server: withheld")

// credentials are what a request presented, before anything is checked.
// They are secrets: never logged.
type credentials struct {
	apiKey     string // x-api-key
	origin     string // Origin
	hasToken   bool   // a token was presented (checked later, by the store)
	admin      string // X-Admin-Token
	gateway    string // X-Gateway-Secret
	hasGateway bool
}

// caller is who a request speaks for, once its credentials checked out.
type caller struct {
	role   Role
	key    keys.Key // PartnerServer, PartnerClient: the partner
	origin string   // BrowserHolder, PartnerClient: the browser's Origin
	secret string   // PartnerServer, PartnerClient: the secret presented, for recheck; never logged
}

// access decides the table's cells. It holds the secrets it checks as
// SHA-256 hashes, compared in constant time whatever their length.
type access struct {
	partners Partners
	admin    *[32]byte // nil: the admin API is off
	gateway  *[32]byte // nil: no gateway secret configured
}

func newAccess(partners Partners, adminToken, gatewaySecret string) *access {
	a := &access{partners: partners}
	if adminToken != "" {
		h := sha256.Sum256([]byte(adminToken))
		a.admin = &h
	}
	if gatewaySecret != "" {
		h := sha256.Sum256([]byte(gatewaySecret))
		a.gateway = &h
	}
	return a
}

func secretMatches(want *[32]byte, got string) bool {
	h := sha256.Sum256([]byte(got))
	return want != nil && subtle.ConstantTimeCompare(h[:], want[:]) == 1
}

// identify tells the caller of op from the credentials op reads. A
// credential that is presented but wrong is an error, never a silent
// downgrade: invalid_api_key, origin_not_allowed (a client secret from an
// origin its key does not allow), unauthorized (admin token, gateway
// secret). While no admin token is configured the admin API is not_found.
func (a *access) identify(op Op, cr credentials) (caller, error) {
	switch {
	case op >= OpAdminListKeys:
		if a.admin == nil {
			return caller{}, newError(api.ErrorErrorNotFound, "the admin API is off: set TOKENSVC_ADMIN_TOKEN")
		}
		if cr.admin == "" {
			return caller{role: Anonymous}, nil
		}
		if !secretMatches(a.admin, cr.admin) {
			return caller{}, newError(api.ErrorErrorUnauthorized, "missing or wrong X-Admin-Token")
		}
		return caller{role: Admin}, nil
	case op == OpForward || op == OpForwardPrivate:
		if cr.hasGateway {
			if !secretMatches(a.gateway, cr.gateway) {
				return caller{}, newError(api.ErrorErrorUnauthorized, "wrong X-Gateway-Secret")
			}
			return caller{role: Gateway}, nil
		}
		if cr.hasToken {
			return caller{role: Holder}, nil
		}
		return caller{role: Anonymous}, nil
	}
	if cr.apiKey != "" {
		key, kind, err := a.partners.Authenticate(cr.apiKey, cr.origin)
		switch {
		case errors.Is(err, keys.ErrOriginNotAllowed):
			return caller{}, newError(api.ErrorErrorOriginNotAllowed, "this key's client secret may not be used from this origin")
		case err != nil:
			return caller{}, errInvalidAPIKey
		case kind == keys.ServerSecret:
			return caller{role: PartnerServer, key: key, secret: cr.apiKey}, nil
		}
		return caller{role: PartnerClient, key: key, origin: cr.origin, secret: cr.apiKey}, nil
	}
	switch {
	case cr.hasToken && cr.origin != "":
		return caller{role: BrowserHolder, origin: cr.origin}, nil
	case cr.hasToken:
		return caller{role: Holder}, nil
	}
	return caller{role: Anonymous}, nil
}

// decide is the table's answer for op asked by c: nil to go ahead,
// errWithheld to go on without it, or the refusal. rec is the token's
// record once it is read, nil before: cells that depend on the token (own
// key, origin) go ahead without it, so that refusals that need no store
// call cost none, and are decided again with it.
//
// Whatever the cell, a token whose minting key is no longer configured,
// or is disabled, is refused as token_revoked.
func (a *access) decide(op Op, c caller, rec *store.Record) error {
	cl := table[op][c.role]
	if cl.v == refuse {
		return codeError(cl.code)
	}
	if rec == nil {
		return nil
	}
	if (cl.v == own || cl.v == ownElse) && c.key.ID != rec.KeyID {
		if cl.v == own {
			return codeError(cl.code) // before anything that would tell of another key's token
		}
		return errWithheld
	}
	if key, found := a.partners.ByID(rec.KeyID); !found || key.Disabled {
		return errTokenRevoked
	}
	switch cl.v {
	case origin:
		if !a.partners.OriginAllowed(rec.KeyID, c.origin) {
			return errOrigin
		}
	case withhold:
		return errWithheld
	}
	return nil
}

// recheck authenticates a partner caller again, against the keys in
// force now: a request that was slow to send its body must not mint with
// a secret removed, rotated away or disabled meanwhile.
func (a *access) recheck(c caller) error {
	if c.role != PartnerServer && c.role != PartnerClient {
		return nil
	}
	again, err := a.identify(OpMint, credentials{apiKey: c.secret, origin: c.origin})
	if err != nil || again.role != c.role || again.key.ID != c.key.ID {
		return errInvalidAPIKey
	}
	return nil
}

// may says whether decide lets op go ahead on rec.
func (a *access) may(op Op, c caller, rec *store.Record) bool {
	return a.decide(op, c, rec) == nil
}

// codeError is the refusal of a cell.
func codeError(code api.ErrorError) *Error {
	switch code {
	case api.ErrorErrorInvalidApiKey:
		return errInvalidAPIKey
	case api.ErrorErrorInvalidToken:
		return errInvalidToken
	case api.ErrorErrorNotFound:
		return errNoSuchToken
	case api.ErrorErrorInvalidBody:
		return newError(code, "send {\"tokens\": [...]}")
	case api.ErrorErrorMissingToken:
		return errMissingToken
	case api.ErrorErrorServerSecretRequired:
		return newError(code, "this needs the partner key's server secret; a client secret may only mint and verify")
	case api.ErrorErrorUnauthorized:
		return newError(code, "missing or wrong X-Admin-Token")
	}
	return newError(code, "refused")
}

// Cell renders one cell of the table as SECURITY.md shows it.
func Cell(op Op, r Role) string {
	cl := table[op][r]
	success := "200"
	if op == OpRevoke || op == OpAdminRevokeToken {
		success = "204"
	}
	refused := func(code api.ErrorError) string { return fmt.Sprintf("%d `%s`", statusOf(code), code) }
	switch cl.v {
	case allow:
		return success
	case own:
		return success + " own tokens, else " + refused(cl.code)
	case origin:
		if op == OpBatch {
			return success + " if the token's key allows the Origin, else `origin_not_allowed` for that token"
		}
		return success + " if the token's key allows the Origin, else " + refused(api.ErrorErrorOriginNotAllowed)
	case withhold:
		return "withheld"
	case ownElse:
		return "own tokens, else withheld"
	}
	return refused(cl.code)
}

// AccessTable renders the access model as the Markdown table of
// SECURITY.md: a row per role, a column per operation.
func AccessTable() string {
	var b strings.Builder
	b.WriteString("| caller |")
	for _, op := range Ops() {
		b.WriteString(" " + op.String() + " |")
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---|", int(numOps)))
	b.WriteString("\n")
	for _, r := range Roles() {
		b.WriteString("| " + r.String() + " |")
		for _, op := range Ops() {
			b.WriteString(" " + Cell(op, r) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}
