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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokensvc/tokensvc/store/storetest"
)

// The gateway examples in examples/gateways, tested as shipped: a real
// nginx (Debian's package) runs examples/gateways/nginx.conf, with only its
// addresses and file paths replaced, in front of tokensvc's /auth and an
// upstream that echoes what it receives. Traefik and Envoy are not packaged
// for Debian, so their files are only checked for shape.

const gatewayPartnerKey = "gateway-partner-key"

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

// renderNginxConf turns the example into a config that runs in dir: the
// services' names become the test's addresses, and the pid file, logs and
// temporary files go into dir.
func renderNginxConf(t *testing.T, dir, tokensvcAddr, editorAddr, listen string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "gateways", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	conf = replaceOnce(t, conf, "server tokensvc:8080;", "server "+tokensvcAddr+";")
	conf = replaceOnce(t, conf, "server editor:8081;", "server "+editorAddr+";")
	conf = replaceOnce(t, conf, "listen 8000;", "listen "+listen+";")
	// Debian's user exists only where nginx is installed the Debian way;
	// nginx runs here as one process (master_process off), which never
	// switches users anyway.
	conf = replaceOnce(t, conf, "user www-data;", "")
	conf = replaceOnce(t, conf, "pid /run/nginx.pid;", "pid "+filepath.Join(dir, "nginx.pid")+";")
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
// test ends, and returns its base URL once it accepts connections.
func startNginx(t *testing.T, bin, tokensvcAddr, editorAddr string) (base, dir string) {
	t.Helper()
	dir = t.TempDir()
	listen := freePort(t)
	conf := renderNginxConf(t, dir, tokensvcAddr, editorAddr, listen)
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
	body   string
	seen   *echoed
}

func gatewayDo(t *testing.T, method, url, body string, header ...string) gatewayReply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range header {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := gatewayReply{status: res.StatusCode, body: string(b)}
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
	in := start(t, env{
		"TOKENSVC_API_KEYS":       gatewayPartnerKey,
		"TOKENSVC_FORWARD_FIELDS": "userId,server,file",
		"TOKENSVC_FORWARD_COOKIE": "editor_token",
	})
	up := newEchoUpstream(t)
	gw, dir := startNginx(t, bin, strings.TrimPrefix(in.base, "http://"), strings.TrimPrefix(up.URL, "http://"))

	// private=auth,server: /verify from a browser would hide them; the
	// gateway is server side and gets server as a header all the same.
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
	if mw := fmt.Sprint(at(traefik, "http", "routers", "editor", "middlewares")); mw != "[tokensvc]" {
		t.Errorf("traefik: the editor router's middlewares are %v", mw)
	}

	envoy := read("envoy.yaml")
	hcm := at(envoy, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config")
	var authz any
	for _, f := range at(hcm, "http_filters").([]any) {
		if at(f, "name") == "envoy.filters.http.ext_authz" {
			authz = at(f, "typed_config")
		}
	}
	if authz == nil {
		t.Fatal("envoy: no ext_authz filter")
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
	allowed := fmt.Sprint(at(authz, "allowed_headers", "patterns"))
	for _, h := range []string{"x-api-token", "authorization", "cookie", "x-forwarded-uri"} {
		if !strings.Contains(allowed, "exact:"+h+"]") {
			t.Errorf("envoy: allowed_headers %v lack %s", allowed, h)
		}
	}
}
