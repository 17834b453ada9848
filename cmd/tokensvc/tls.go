package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// certFiles serves a certificate from files and picks it up again when
// either file changes, so certificates rotate without a restart. The files
// are looked at no more than once a second.
type certFiles struct {
	cert, key string
	mu        sync.Mutex
	current   *tls.Certificate
	stamp     string // sizes and modification times the current one was read at
	checked   time.Time
}

func newCertFiles(cert, key string) (*certFiles, error) {
	c := &certFiles{cert: cert, key: key}
	if _, err := c.get(nil); err != nil {
		return nil, fmt.Errorf("configuration TOKENSVC_TLS_CERT/TOKENSVC_TLS_KEY: %w", err)
	}
	return c, nil
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil && time.Since(c.checked) < time.Second {
		return c.current, nil
	}
	c.checked = time.Now()
	stamp, err := fileStamp(c.cert, c.key)
	if err != nil || stamp == c.stamp {
		if c.current != nil {
			return c.current, nil // keep serving the last good one
		}
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		if c.current != nil {
			return c.current, nil // a half-written pair: try again later
		}
		return nil, err
	}
	c.current, c.stamp = &pair, stamp
	return c.current, nil
}

func fileStamp(paths ...string) (string, error) {
	var s string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// serverTLS is the HTTPS configuration of the listener.
func serverTLS(c *certFiles) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}
}

// hsts tells browsers to keep to HTTPS.
func hsts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=63072000")
		next.ServeHTTP(w, r)
	})
}

// caPool reads a PEM CA file for verifying Redis.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in the file")
	}
	return pool, nil
}
