package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokensvc/tokensvc/store/storetest"
)

// The gateway examples in examples/gateways, tested as shipped: a real
// nginx (Debian's package) runs examples/gateways/nginx.conf, with only its
// addresses, file paths and the gateway secret's placeholder replaced, in
// front of tokensvc's /auth and an upstream that echoes what it receives.
// Traefik and Envoy are not packaged for Debian, so their files are only
// checked for shape.

const (
	gatewayPartnerKey = "gateway-partner-key"
	gatewaySecret     = "gateway-secret-0f1e2d3c4b5a6978"
	// nginx listens on 127.0.0.1 and reaches tokensvc from there: the
	// one trusted proxy. Clients connect from other loopback addresses
	// (127.0.0.0/8 is all loopback on Linux), so each has its own.
	nginxTrusted = "127.0.0.1/32"
)

// gatewayEnv is tokensvc's environment for the nginx example, plus extra.
func gatewayEnv(extra env) env {
	e := env{
		"TOKENSVC_API_KEYS":        gatewayPartnerKey,
		"TOKENSVC_FORWARD_FIELDS":  "userId,server,file",
		"TOKENSVC_FORWARD_COOKIE":  "editor_token",
		"TOKENSVC_FORWARD_SECRET":  gatewaySecret,
		"TOKENSVC_TRUSTED_PROXIES": nginxTrusted,
	}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

// nginxBinary finds nginx: skipped without it on a developer's machine, a
// failure in CI, which installs it.
func nginxBinary(t *testing.T) string {
	t.Helper()
	return storetest.NeedBinary(t, "nginx", "apt-get install nginx, and /usr/sbin on PATH")
}

// echoed is what the upstream saw of one request.
type echoed struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Body   string      `json:"body"`
	Header http.Header `json:"header"`
}

// echoUpstream stands for the editor: it answers each request with the
// request as JSON, and counts them.
type echoUpstream struct {
	*httptest.Server
	hits atomic.Int64
}

func newEchoUpstream(t *testing.T) *echoUpstream {
	t.Helper()
	u := &echoUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, URI: r.RequestURI, Body: string(body), Header: r.Header})
	}))
	t.Cleanup(u.Close)
	return u
}

// freePort finds a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).AddrPort().String()
}

// replaceOnce replaces the one occurrence of old in s, and fails when the
// example no longer holds it exactly once: the test must run the example
// as shipped, not a silently different file.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("examples/gateways/nginx.conf holds %q %d times, want once", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// nginxSecretLine is the example's gateway proof, with the placeholder an
// operator replaces by the secret.
const nginxSecretLine = `proxy_set_header X-Gateway-Secret "${TOKENSVC_FORWARD_SECRET}";`

// renderNginxConf turns the example into a config that runs in dir: the
// services' names become the test's addresses, the placeholder the
// secret (an empty secret drops the line: a gateway that sends no proof),
// and the pid file, logs and temporary files go into dir.
func renderNginxConf(t *testing.T, dir, tokensvcAddr, editorAddr, listen, secret string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "gateways", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	if secret == "" {
		conf = replaceOnce(t, conf, nginxSecretLine, "")
	} else {
		conf = replaceOnce(t, conf, nginxSecretLine, strings.Replace(nginxSecretLine, "${TOKENSVC_FORWARD_SECRET}", secret, 1))
	}
	conf = replaceOnce(t, conf, "server tokensvc:8080;", "server "+tokensvcAddr+";")
	conf = replaceOnce(t, conf, "server editor:8081;", "server "+editorAddr+";")
	conf = replaceOnce(t, conf, "listen 8000;", "listen "+listen+";")
	// Debian's user exists only where nginx is installed the Debian way;
	// nginx runs here as one process (master_process off), which never
	// switches users anyway.
	conf = replaceOnce(t, conf, "user www-data;", "")
	conf = replaceOnce(t, conf, "pid /run/nginx.pid;", "pid "+filepath.Join(dir, "nginx.pid")+";")
	conf = replaceOnce(t, conf, "proxy_cache_path /run/nginx-tokensvc ", "proxy_cache_path "+filepath.Join(dir, "cache")+" ")
	conf = replaceOnce(t, conf, "error_log /var/log/nginx/error.log warn;", "error_log "+filepath.Join(dir, "error.log")+" info;")
	temp := ""
	for _, kind := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		temp += fmt.Sprintf("\n    %s_temp_path %s;", kind, filepath.Join(dir, "temp", kind))
	}
	conf = replaceOnce(t, conf, "access_log /var/log/nginx/access.log tokensafe;",
		"access_log "+filepath.Join(dir, "access.log")+" tokensafe;"+temp)
	if err := os.MkdirAll(filepath.Join(dir, "temp"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNginx runs nginx in the foreground as one process, killed when the
// test ends, and returns its base URL once it accepts connections. secret
// goes where the example's placeholder is ("": no proof sent).
func startNginx(t *testing.T, bin, tokensvcAddr, editorAddr, secret string) (base, dir string) {
	t.Helper()
	dir = t.TempDir()
	listen := freePort(t)
	conf := renderNginxConf(t, dir, tokensvcAddr, editorAddr, listen, secret)
	var out bytes.Buffer
	var outMu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { outMu.Lock(); defer outMu.Unlock(); return out.Write(p) })
	cmd := exec.Command(bin, "-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "error.log"),
		"-g", "daemon off; master_process off;")
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	logs := func() string {
		outMu.Lock()
		defer outMu.Unlock()
		el, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return out.String() + string(el)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("nginx exited: %v\n%s", err, logs())
		default:
		}
		if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
			c.Close()
			return "http://" + listen, dir
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s:\n%s", listen, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// gatewayReply is one answer through nginx; seen is set when the upstream
// answered (its echo of the request).
type gatewayReply struct {
	status int
	header http.Header
	body   string
	seen   *echoed
}

func gatewayDo(t *testing.T, method, url, body string, header ...string) gatewayReply {
	t.Helper()
	return gatewayFrom(t, "", method, url, body, header...)
}

// gatewayFrom sends one request from the local address from (such as
// 127.0.0.2; "" for any), on a connection of its own.
func gatewayFrom(t *testing.T, from, method, url, body string, header ...string) gatewayReply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range header {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c := &http.Client{
		Transport:     &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := gatewayReply{status: res.StatusCode, header: res.Header, body: string(b)}
	if res.StatusCode == http.StatusOK && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		r.seen = &echoed{}
		if err := json.Unmarshal(b, r.seen); err != nil {
			t.Fatalf("%s %s: the upstream's echo does not parse: %v\n%s", method, url, err, b)
		}
	}
	return r
}

func TestGatewayNginx(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	in := start(t, gatewayEnv(nil))
	up := newEchoUpstream(t)
	gw, dir := startNginx(t, bin, strings.TrimPrefix(in.base, "http://"), strings.TrimPrefix(up.URL, "http://"), gatewaySecret)

	// private=auth,server: /verify from a browser would hide them; the
	// gateway proves itself with the secret and gets server as a header.
	bundle := `{"auth":"partner-secret","file":"/drawings/1.dwg","userId":"u-42","server":"eu-1"}`
	token := in.mint(t, gatewayPartnerKey, "private=auth,server", bundle).Token.String()
	var secrets []string
	secrets = append(secrets, token)

	// passed checks that the request reached the upstream with the
	// bundle's fields as the example's headers.
	passed := func(name string, r gatewayReply, user, server, file string) *echoed {
		t.Helper()
		if r.status != http.StatusOK || r.seen == nil {
			t.Fatalf("%s: %d %s, want the upstream's 200", name, r.status, r.body)
		}
		for h, want := range map[string]string{"X-User-Id": user, "X-Server": server, "X-File": file} {
			got := r.seen.Header.Values(h)
			switch {
			case want == "" && len(got) != 0:
				t.Errorf("%s: the upstream got %s: %q, want none", name, h, got)
			case want != "" && (len(got) != 1 || got[0] != want):
				t.Errorf("%s: the upstream got %s: %q, want %q", name, h, got, want)
			}
		}
		if got := r.seen.Header.Values("X-Gateway-Secret"); len(got) != 0 {
			t.Errorf("%s: the upstream got X-Gateway-Secret %q", name, got)
		}
		return r.seen
	}
	// denied checks that nginx answered status itself and the upstream
	// never saw the request.
	denied := func(name string, r gatewayReply, status int, hitsBefore int64) {
		t.Helper()
		if r.status != status || r.seen != nil {
			t.Errorf("%s: %d %s, want %d from nginx", name, r.status, r.body, status)
		}
		if n := up.hits.Load(); n != hitsBefore {
			t.Errorf("%s: the upstream was reached (%d requests, want %d)", name, n, hitsBefore)
		}
	}

	// (a) The token in the original query: tokensvc reads it from
	// X-Original-URI. The upstream gets the URI unchanged.
	r := gatewayDo(t, "GET", gw+"/open?file=1&token="+token, "")
	seen := passed("?token=", r, "u-42", "eu-1", "/drawings/1.dwg")
	if seen.URI != "/open?file=1&token="+token || seen.Method != "GET" {
		t.Errorf("?token=: the upstream got %s %s", seen.Method, seen.URI)
	}

	// (b) The x-api-token header, and Authorization: Bearer.
	passed("x-api-token", gatewayDo(t, "GET", gw+"/api/files", "", "x-api-token: "+token), "u-42", "eu-1", "/drawings/1.dwg")
	passed("bearer", gatewayDo(t, "GET", gw+"/api/files", "", "Authorization: Bearer "+token), "u-42", "eu-1", "/drawings/1.dwg")

	// (c) The cookie named by TOKENSVC_FORWARD_COOKIE, among others.
	passed("cookie", gatewayDo(t, "GET", gw+"/", "", "Cookie: theme=dark; editor_token="+token), "u-42", "eu-1", "/drawings/1.dwg")

	// A POST with a body: the check goes without it (and as a POST: /auth
	// takes any method), the upstream gets it whole.
	seen = passed("POST", gatewayDo(t, "POST", gw+"/api/save", `{"shape":"circle"}`, "x-api-token: "+token, "Content-Type: application/json"), "u-42", "eu-1", "/drawings/1.dwg")
	if seen.Method != "POST" || seen.Body != `{"shape":"circle"}` {
		t.Errorf("POST: the upstream got %s %q", seen.Method, seen.Body)
	}

	// A client cannot forge the identity headers: with a bundle that has
	// no server and no file, its own X-Server and X-File are dropped and
	// its X-User-Id is replaced by the bundle's.
	partial := in.mint(t, gatewayPartnerKey, "", `{"userId":"u-7"}`).Token.String()
	secrets = append(secrets, partial)
	passed("forged headers", gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+partial,
		"X-User-Id: admin", "X-Server: prod", "X-File: /etc/shadow"), "u-7", "", "")
	// A client's own X-Gateway-Secret is replaced by nginx's on the check
	// (a wrong one would be tokensvc's 401) and never reaches the editor
	// (passed checks that).
	passed("client's own gateway secret", gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+partial,
		"X-Gateway-Secret: client-guess-0123456789"), "u-7", "", "")

	// (d) No token: 401 from nginx, the upstream never sees it. A token
	// in a cookie of another name is no token.
	hits := up.hits.Load()
	denied("no token", gatewayDo(t, "GET", gw+"/open?file=1", ""), http.StatusUnauthorized, hits)
	denied("other cookie", gatewayDo(t, "GET", gw+"/", "", "Cookie: session="+token), http.StatusUnauthorized, hits)

	// (e) A bad token: 403. Unknown, malformed, in each place.
	denied("unknown token", gatewayDo(t, "GET", gw+"/open?token=00000000-0000-4000-8000-000000000000", ""), http.StatusForbidden, hits)
	denied("malformed header", gatewayDo(t, "GET", gw+"/", "", "x-api-token: nope"), http.StatusForbidden, hits)
	denied("malformed cookie", gatewayDo(t, "GET", gw+"/", "", "Cookie: editor_token=nope"), http.StatusForbidden, hits)

	// (f) A single-use token opens one request: the forward-auth check is
	// the use. The second request is refused before the upstream.
	once := in.mint(t, gatewayPartnerKey, "uses=1", `{"userId":"u-once","server":"s1","file":"/f"}`).Token.String()
	secrets = append(secrets, once)
	passed("uses=1, first", gatewayDo(t, "GET", gw+"/open?token="+once, ""), "u-once", "s1", "/f")
	hits = up.hits.Load()
	denied("uses=1, second", gatewayDo(t, "GET", gw+"/open?token="+once, ""), http.StatusForbidden, hits)
	denied("uses=1, second, as a header", gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+once), http.StatusForbidden, hits)
	if code, body := in.verifyCode(t, once); code != 403 || body != "token_used" {
		t.Errorf("uses=1 after the gateway's check: /verify answers %d %s, want 403 token_used", code, body)
	}

	// A revoked token is refused at the gateway at once.
	revoked := in.mint(t, gatewayPartnerKey, "", `{"userId":"u-gone"}`)
	secrets = append(secrets, revoked.Token.String())
	passed("before revoke", gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+revoked.Token.String()), "u-gone", "", "")
	res, err := in.client.RevokeTokenWithResponse(context.Background(), revoked.TokenId, withHeader("x-api-key", gatewayPartnerKey))
	if err != nil || res.StatusCode() != http.StatusNoContent {
		t.Fatalf("revoke: %v %d %s", err, res.StatusCode(), res.Body)
	}
	hits = up.hits.Load()
	denied("revoked", gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+revoked.Token.String()), http.StatusForbidden, hits)

	// The internal auth location is not reachable from outside.
	denied("internal location", gatewayDo(t, "GET", gw+"/_tokensvc_auth", "", "x-api-token: "+token), http.StatusNotFound, hits)

	// The example's access log format keeps tokens out of nginx's log.
	accessLog, err := os.ReadFile(filepath.Join(dir, "access.log"))
	if err != nil || !strings.Contains(string(accessLog), "GET /open") {
		t.Fatalf("nginx's access log: %v\n%s", err, accessLog)
	}
	for _, s := range secrets {
		if strings.Contains(string(accessLog), s) {
			t.Errorf("a token reached nginx's access log:\n%s", accessLog)
			break
		}
	}
}

// authChecks is how many checks /auth has passed, from tokensvc's
// metrics (the access log is written in batches).
func authChecks(t *testing.T, in *instance) int {
	t.Helper()
	const series = `tokensvc_tokens_verified_total{route="/auth"} `
	for _, line := range strings.Split(get(t, in.base+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	return 0
}

// TOKENSVC_FORWARD_CACHE_TTL through the real nginx example: 1,000
// requests with one token reach /auth at most once per max-age, all with
// the token's headers; a revoked token is refused once max-age has
// passed; the checks of tokens whose every use must reach tokensvc (a use
// limit, an idle expiry) are never kept.
func TestGatewayNginxCache(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	const maxAge = 2 * time.Second
	in := start(t, gatewayEnv(env{"TOKENSVC_FORWARD_CACHE_TTL": "2s"}))
	up := newEchoUpstream(t)
	gw, _ := startNginx(t, bin, strings.TrimPrefix(in.base, "http://"), strings.TrimPrefix(up.URL, "http://"), gatewaySecret)
	token := in.mint(t, gatewayPartnerKey, "", `{"userId":"u-c","server":"s-1","file":"/f"}`)

	// 1,000 requests from 10 clients at once, on connections of their own.
	const clients, each = 10, 100
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 10 * time.Second}
	var failed atomic.Int64
	var firstFailure atomic.Value
	checks0 := authChecks(t, in)
	began := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				req, _ := http.NewRequest("GET", gw+"/open?token="+token.Token.String(), nil)
				res, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				var seen echoed
				err = json.NewDecoder(res.Body).Decode(&seen)
				res.Body.Close()
				if res.StatusCode != 200 || err != nil || seen.Header.Get("X-User-Id") != "u-c" || seen.Header.Get("X-Server") != "s-1" {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %v %v", res.StatusCode, err, seen.Header))
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(began)
	checks := authChecks(t, in) - checks0
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests did not reach the upstream with the token's headers; first: %v", n, clients*each, firstFailure.Load())
	}
	// nginx refreshes an expired answer for each request that finds it
	// expired (proxy_cache_lock holds back only the first fill), so each
	// client in flight at an expiry may reach /auth once.
	if most := (int(took/maxAge) + 1) * clients; checks < 1 || checks > most {
		t.Errorf("%d requests in %s reached /auth %d times, want 1 to %d (once per %s per client at most)", clients*each, took.Round(time.Millisecond), checks, most, maxAge)
	}
	t.Logf("%d requests in %s through nginx: %d checks reached tokensvc", clients*each, took.Round(time.Millisecond), checks)

	// Revoked: refused at the latest once max-age has passed.
	res, err := in.client.RevokeTokenWithResponse(context.Background(), token.TokenId, withHeader("x-api-key", gatewayPartnerKey))
	if err != nil || res.StatusCode() != http.StatusNoContent {
		t.Fatalf("revoke: %v %d %s", err, res.StatusCode(), res.Body)
	}
	time.Sleep(maxAge + 200*time.Millisecond)
	hits := up.hits.Load()
	if r := gatewayDo(t, "GET", gw+"/open?token="+token.Token.String(), ""); r.status != http.StatusForbidden || up.hits.Load() != hits {
		t.Errorf("revoked %s ago: %d %s, want 403 from nginx", maxAge+200*time.Millisecond, r.status, r.body)
	}

	// Tokens whose every check counts are checked every time.
	for _, query := range []string{"uses=1000", "idle_ttl=600"} {
		tok := in.mint(t, gatewayPartnerKey, query, `{"userId":"u-n"}`).Token.String()
		before := authChecks(t, in)
		for i := range 5 {
			upstreamGot(t, fmt.Sprintf("%s, request %d", query, i+1), gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+tok), map[string]string{"X-User-Id": "u-n"})
		}
		if n := authChecks(t, in) - before; n != 5 {
			t.Errorf("%s: 5 requests reached /auth %d times, want 5", query, n)
		}
	}
}

// upstreamGot fails t unless r reached the upstream with exactly these
// identity headers ("" for absent).
func upstreamGot(t *testing.T, name string, r gatewayReply, want map[string]string) {
	t.Helper()
	if r.status != http.StatusOK || r.seen == nil {
		t.Fatalf("%s: %d %s, want the upstream's 200", name, r.status, r.body)
	}
	for h, v := range want {
		if got := r.seen.Header.Get(h); got != v {
			t.Errorf("%s: the upstream got %s: %q, want %q", name, h, got, v)
		}
	}
}

// Private fields reach the editor only through a gateway that sends the
// secret; a direct call to /auth with the token, without it, gets the
// public fields only, and a wrong secret is refused.
func TestGatewayNginxPrivateFieldsNeedTheSecret(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	in := start(t, gatewayEnv(nil))
	up := newEchoUpstream(t)
	tokensvcAddr, editorAddr := strings.TrimPrefix(in.base, "http://"), strings.TrimPrefix(up.URL, "http://")
	proven, _ := startNginx(t, bin, tokensvcAddr, editorAddr, gatewaySecret)
	unproven, _ := startNginx(t, bin, tokensvcAddr, editorAddr, "")
	wrong, _ := startNginx(t, bin, tokensvcAddr, editorAddr, "not-the-gateway-secret-0123")

	// server is private: the partner's backend reads it, a browser never.
	token := in.mint(t, gatewayPartnerKey, "private=server", `{"userId":"u-42","server":"eu-1","file":"/f"}`).Token.String()
	upstreamGot(t, "nginx with the secret", gatewayDo(t, "GET", proven+"/", "", "x-api-token: "+token),
		map[string]string{"X-User-Id": "u-42", "X-Server": "eu-1", "X-File": "/f"})
	upstreamGot(t, "nginx without the secret", gatewayDo(t, "GET", unproven+"/", "", "x-api-token: "+token),
		map[string]string{"X-User-Id": "u-42", "X-Server": "", "X-File": "/f"})
	hits := up.hits.Load()
	if r := gatewayDo(t, "GET", wrong+"/", "", "x-api-token: "+token); r.status != http.StatusUnauthorized || r.seen != nil || up.hits.Load() != hits {
		t.Errorf("nginx with a wrong secret: %d %s, want 401 from nginx", r.status, r.body)
	}

	// Straight to tokensvc, as anyone who holds the token could.
	direct := func(header ...string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", in.base+"/auth", nil)
		req.Header.Set("x-api-token", token)
		for _, h := range header {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, string(b)
	}
	code, h, body := direct()
	if code != http.StatusOK || h.Get("X-Token-Userid") != "u-42" || h.Get("X-Token-File") != "/f" || len(h.Values("X-Token-Server")) != 0 {
		t.Errorf("direct /auth without the secret: %d %v %s, want 200 with the public fields only", code, h, body)
	}
	code, h, body = direct("X-Gateway-Secret: " + gatewaySecret + "0")
	if code != http.StatusUnauthorized || !strings.Contains(body, `"error":"unauthorized"`) || len(h.Values("X-Token-Userid")) != 0 {
		t.Errorf("direct /auth with a wrong secret: %d %v %s, want 401 unauthorized", code, h, body)
	}
	in.stop() // every access line written out
	if strings.Contains(in.stdout.String()+in.stderr.String(), gatewaySecret) {
		t.Error("the gateway secret reached tokensvc's log")
	}
}

// Behind nginx each client is limited by its own address: one client
// sending bad tokens until 429 locks no one else out, forged
// X-Forwarded-For values neither dodge the guard nor frame another
// client, and the 429 reaches the client as a 429 with Retry-After.
func TestGatewayNginxClientAddress(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	in := start(t, gatewayEnv(env{"TOKENSVC_VERIFY_FAILURE_RATE": "5/m", "TOKENSVC_MAX_BATCH": "5"}))
	up := newEchoUpstream(t)
	gw, _ := startNginx(t, bin, strings.TrimPrefix(in.base, "http://"), strings.TrimPrefix(up.URL, "http://"), gatewaySecret)
	good := in.mint(t, gatewayPartnerKey, "", `{"userId":"u-b"}`).Token.String()
	const attacker, victim, forger, framer = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
	bad := func(i int) string { return fmt.Sprintf("x-api-token: 00000000-0000-4000-8000-%012d", i) }

	// limited sends bad tokens from one address until nginx answers 429,
	// which must come after exactly the guard's 5 failures.
	limited := func(name, from string, header func(i int) []string) gatewayReply {
		t.Helper()
		for i := 0; ; i++ {
			r := gatewayFrom(t, from, "GET", gw+"/", "", append(header(i), bad(i))...)
			switch {
			case r.status == http.StatusTooManyRequests && i == 5:
				return r
			case r.status == http.StatusForbidden && i < 5:
				continue
			}
			t.Fatalf("%s: bad token %d answered %d %s, want 403 five times, then 429", name, i+1, r.status, r.body)
		}
	}
	none := func(int) []string { return nil }
	r := limited("attacker", attacker, none)
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 12 {
		t.Errorf("the 429 has Retry-After %q, want 1 to 12 seconds (5 a minute)", r.header.Get("Retry-After"))
	}
	if r := gatewayFrom(t, attacker, "GET", gw+"/", "", "x-api-token: "+good); r.status != http.StatusTooManyRequests {
		t.Errorf("the limited client with a good token: %d, want 429", r.status)
	}

	// Another client behind the same nginx is not affected.
	upstreamGot(t, "another client", gatewayFrom(t, victim, "GET", gw+"/", "", "x-api-token: "+good), map[string]string{"X-User-Id": "u-b"})
	if r := gatewayFrom(t, victim, "GET", gw+"/", "", bad(99)); r.status != http.StatusForbidden {
		t.Errorf("another client's bad token: %d, want 403 (its own count)", r.status)
	}

	// A client rotating forged X-Forwarded-For values is limited all the
	// same, by its own address.
	limited("forger", forger, func(i int) []string {
		return []string{fmt.Sprintf("X-Forwarded-For: 198.51.100.%d", i+1)}
	})
	// One posing as the other client spends its own allowance, not the
	// other's: the other client still gets in.
	limited("framer", framer, func(int) []string { return []string{"X-Forwarded-For: " + victim} })
	upstreamGot(t, "the client the framer posed as", gatewayFrom(t, victim, "GET", gw+"/", "", "x-api-token: "+good), map[string]string{"X-User-Id": "u-b"})
}

// A store outage reaches the client as 503, and so does a tokensvc that
// cannot be reached, not as nginx's 500; the editor never sees the
// request.
func TestGatewayNginxOutageIs503(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	rs := startRedis(t, false)
	in := startOnRedis(t, rs.URL(), gatewayEnv(env{"TOKENSVC_API_KEYS": "k", "TOKENSVC_STORE_TIMEOUT": outageStoreTimeout}))
	up := newEchoUpstream(t)
	gw, _ := startNginx(t, bin, strings.TrimPrefix(in.base, "http://"), strings.TrimPrefix(up.URL, "http://"), gatewaySecret)
	token := in.mint(t, "k", "", `{"userId":"u-1"}`).Token.String()
	upstreamGot(t, "before the outage", gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+token), map[string]string{"X-User-Id": "u-1"})

	hits := up.hits.Load()
	rs.Kill()
	if r := gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+token); r.status != http.StatusServiceUnavailable || r.seen != nil {
		t.Errorf("store down: %d %s, want 503 from nginx", r.status, r.body)
	}
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	if r := gatewayDo(t, "GET", gw+"/", "", "x-api-token: "+token); r.status != http.StatusServiceUnavailable || r.seen != nil {
		t.Errorf("tokensvc down: %d %s, want 503 from nginx", r.status, r.body)
	}
	if n := up.hits.Load(); n != hits {
		t.Errorf("the upstream was reached during the outage (%d requests, want %d)", n, hits)
	}
}

// The Traefik and Envoy examples cannot run here (no Debian package); they
// must at least parse and point at /auth with the headers tokensvc sends.
func TestGatewayExamplesParse(t *testing.T) {
	read := func(name string) map[string]any {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "gateways", name))
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: more than one YAML document (%v)", name, err)
		}
		return doc
	}
	// at walks a path of map keys and list indexes.
	at := func(doc any, path ...any) any {
		t.Helper()
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m, ok := doc.(map[string]any)
				if !ok {
					t.Fatalf("no %q in %v at %v", k, path, doc)
				}
				doc = m[k]
			case int:
				l, ok := doc.([]any)
				if !ok || k >= len(l) {
					t.Fatalf("no [%d] in %v", k, path)
				}
				doc = l[k]
			}
		}
		return doc
	}
	wantHeaders := []string{"X-Token-Userid", "X-Token-Server", "X-Token-File"}

	traefik := read("traefik.yml")
	fa := at(traefik, "http", "middlewares", "tokensvc", "forwardAuth")
	if a := at(fa, "address"); a != "http://tokensvc:8080/auth" {
		t.Errorf("traefik: forwardAuth address %v", a)
	}
	if h := fmt.Sprint(at(fa, "authResponseHeaders")); h != fmt.Sprint(wantHeaders) {
		t.Errorf("traefik: authResponseHeaders %v, want %v", h, wantHeaders)
	}
	// The proof is set before the check and removed after it; the check's
	// X-Forwarded-For is Traefik's view of the client, not the client's.
	if mw := fmt.Sprint(at(traefik, "http", "routers", "editor", "middlewares")); mw != "[tokensvc-proof tokensvc tokensvc-proof-strip]" {
		t.Errorf("traefik: the editor router's middlewares are %v", mw)
	}
	if v := at(fa, "trustForwardHeader"); v != false {
		t.Errorf("traefik: trustForwardHeader %v, want false", v)
	}
	if h := fmt.Sprint(at(fa, "authRequestHeaders")); !strings.Contains(h, "X-Gateway-Secret") {
		t.Errorf("traefik: authRequestHeaders %v lack X-Gateway-Secret", h)
	}
	proof := at(traefik, "http", "middlewares", "tokensvc-proof", "headers", "customRequestHeaders", "X-Gateway-Secret")
	if p, _ := proof.(string); !strings.Contains(p, `env "TOKENSVC_FORWARD_SECRET"`) {
		t.Errorf("traefik: the proof is %v, want the TOKENSVC_FORWARD_SECRET template", proof)
	}
	if v := at(traefik, "http", "middlewares", "tokensvc-proof-strip", "headers", "customRequestHeaders", "X-Gateway-Secret"); v != "" {
		t.Errorf("traefik: the strip middleware sets X-Gateway-Secret to %v, want empty (removed)", v)
	}

	envoy := read("envoy.yaml")
	hcm := at(envoy, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config")
	if at(hcm, "use_remote_address") != true || at(hcm, "xff_num_trusted_hops") != 0 {
		t.Errorf("envoy: use_remote_address %v, xff_num_trusted_hops %v; want true, 0",
			at(hcm, "use_remote_address"), at(hcm, "xff_num_trusted_hops"))
	}
	var authz, mutation any
	for _, f := range at(hcm, "http_filters").([]any) {
		switch at(f, "name") {
		case "envoy.filters.http.ext_authz":
			authz = at(f, "typed_config")
		case "envoy.filters.http.header_mutation":
			if authz == nil {
				mutation = at(f, "typed_config")
			}
		}
	}
	if authz == nil || mutation == nil {
		t.Fatal("envoy: no ext_authz filter, or no header_mutation before it")
	}
	mutations := fmt.Sprint(at(mutation, "mutations", "request_mutations"))
	for _, want := range []string{"remove:x-gateway-secret", "key:x-forwarded-for value:%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"} {
		if !strings.Contains(mutations, want) {
			t.Errorf("envoy: the request mutations %v lack %s", mutations, want)
		}
	}
	if at(authz, "failure_mode_allow") != false || at(authz, "status_on_error", "code") != "ServiceUnavailable" {
		t.Errorf("envoy: failure_mode_allow %v, status_on_error %v; want false, ServiceUnavailable",
			at(authz, "failure_mode_allow"), at(authz, "status_on_error"))
	}
	svc := at(authz, "http_service")
	if p := at(svc, "path_prefix"); p != "/auth" {
		t.Errorf("envoy: path_prefix %v", p)
	}
	if c := at(svc, "server_uri", "cluster"); c != "tokensvc" {
		t.Errorf("envoy: ext_authz cluster %v", c)
	}
	if p := fmt.Sprint(at(svc, "authorization_response", "allowed_upstream_headers", "patterns")); !strings.Contains(p, "prefix:x-token-") {
		t.Errorf("envoy: allowed_upstream_headers %v", p)
	}
	// Denials (429 with Retry-After) go to the client with all of
	// tokensvc's headers while allowed_client_headers is unset.
	if h := at(svc, "authorization_response", "allowed_client_headers"); h != nil {
		t.Errorf("envoy: allowed_client_headers %v would filter Retry-After out of a 429", h)
	}
	if h := fmt.Sprint(at(svc, "authorization_request", "headers_to_add")); h != "[map[key:x-gateway-secret value:${TOKENSVC_FORWARD_SECRET}]]" {
		t.Errorf("envoy: headers_to_add %v, want the x-gateway-secret placeholder", h)
	}
	allowed := fmt.Sprint(at(authz, "allowed_headers", "patterns"))
	for _, h := range []string{"x-api-token", "authorization", "cookie", "x-forwarded-uri", "x-forwarded-for"} {
		if !strings.Contains(allowed, "exact:"+h+"]") {
			t.Errorf("envoy: allowed_headers %v lack %s", allowed, h)
		}
	}
	if strings.Contains(allowed, "x-gateway-secret") {
		t.Errorf("envoy: allowed_headers %v pass a client's x-gateway-secret on", allowed)
	}
}
