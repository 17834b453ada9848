package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokensvc/tokensvc/store/storetest"
)

// testCA makes a CA and issues server certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokensvc test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for 127.0.0.1 with the given serial to dir.
func (ca *testCA) issue(t *testing.T, dir string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Write to temporary names and rename, as certificate tools do.
	for name, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(name+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(name+".tmp", name); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// HTTPS with HSTS, and a rotated certificate is served without a restart.
func TestHTTPSWithCertificateRotation(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	cert, key := ca.issue(t, dir, 100)
	in := start(t, env{"TOKENSVC_API_KEYS": "k", "TOKENSVC_TLS_CERT": cert, "TOKENSVC_TLS_KEY": key})
	addr := strings.TrimPrefix(in.base, "http://")
	serial := func() int64 {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, DisableKeepAlives: true}
		res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Strict-Transport-Security"), "max-age=") {
			t.Fatalf("HTTPS /healthz: %d %v", res.StatusCode, res.Header)
		}
		return res.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 100 {
		t.Fatalf("serial %d", got)
	}
	hc := env{"TOKENSVC_ADDR": addr, "TOKENSVC_TLS_CERT": cert, "TOKENSVC_TLS_KEY": key}
	if err := run(context.Background(), []string{"healthcheck"}, hc.get, nil, &lockedBuffer{}, &lockedBuffer{}, nil); err != nil {
		t.Fatalf("healthcheck over HTTPS: %v", err)
	}
	if res, err := http.Get("http://" + addr + "/healthz"); err == nil && res.StatusCode == 200 {
		t.Fatal("plain HTTP was served on the TLS listener")
	}
	time.Sleep(1100 * time.Millisecond) // distinct modification times
	ca.issue(t, dir, 200)
	deadline := time.Now().Add(10 * time.Second)
	for serial() != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was not picked up")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rediss:// with a private CA: the service verifies Redis with it.
func TestRedisOverTLSWithCustomCA(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	cert, key := ca.issue(t, dir, 7)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.pem, 0o600)
	port := freeTCPPort(t)
	storetest.StartServer(t, storetest.ServerOptions{Args: []string{
		"--tls-port", port, "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
	}})
	url := "rediss://127.0.0.1:" + port + "/0"
	e := env{"TOKENSVC_REDIS_URL": url, "TOKENSVC_REDIS_CA": caFile, "TOKENSVC_REDIS_PREFIX": freshPrefix()}
	if err := run(context.Background(), []string{"migrate"}, e.get, nil, &lockedBuffer{}, &lockedBuffer{}, nil); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}
	e["TOKENSVC_API_KEYS"] = "k"
	in := start(t, e)
	tok := in.mint(t, "k", "", `{"over":"tls"}`)
	if code, body := in.verifyCode(t, tok.Token.String()); code != 200 || body != `{"over":"tls"}` {
		t.Fatalf("verify over TLS Redis: %d %s", code, body)
	}
	// Without the CA, the server's certificate is refused.
	bad := env{"TOKENSVC_REDIS_URL": url, "TOKENSVC_REDIS_PREFIX": "x:"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := run(ctx, []string{"migrate"}, bad.get, nil, &lockedBuffer{}, &lockedBuffer{}, nil); err == nil {
		t.Fatal("migrate trusted an unknown CA")
	}
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
