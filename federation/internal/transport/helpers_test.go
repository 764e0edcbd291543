package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/plexus-chat/plexus/internal/tlscert"
)

// newCert makes a self-signed certificate for hosts.
func newCert(t *testing.T, hosts ...string) tls.Certificate {
	t.Helper()
	c, err := tlscert.Load(tlscert.Config{DataDir: t.TempDir(), Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return c.Certificate
}

// poolOf trusts the given self-signed certificates.
func poolOf(certs ...tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Leaf)
	}
	return p
}

// startTLS serves h over TLS on 127.0.0.1 with cert.
func startTLS(t *testing.T, cert tls.Certificate, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// Failed handshakes are what several tests provoke.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// staticKeys is a KeySource over a fixed set of keys.
type staticKeys struct {
	mu   sync.Mutex // guards keys
	keys map[string]ed25519.PublicKey
}

func (s *staticKeys) add(server, keyID string, priv ed25519.PrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]ed25519.PublicKey{}
	}
	s.keys[server+" "+keyID] = priv.Public().(ed25519.PublicKey)
}

func (s *staticKeys) VerifyKey(_ context.Context, server, keyID string, _ int64) (ed25519.PublicKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[server+" "+keyID]
	if !ok {
		return nil, fmt.Errorf("no key %s of %s", keyID, server)
	}
	return k, nil
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.KeyID == "" {
		cfg.KeyID = "ed25519:test"
		cfg.Key = newKey(t)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
