package tlscert

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGenerateThenReuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := Config{DataDir: dir, Hosts: []string{"example.org", "127.0.0.1"}}
	first, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Generated || !first.SelfSigned {
		t.Errorf("first Load: Generated=%v SelfSigned=%v, want both", first.Generated, first.SelfSigned)
	}
	for _, p := range []string{first.CertPath, first.KeyPath} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", p, perm)
		}
	}
	leaf := first.Leaf
	if err := leaf.VerifyHostname("example.org"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.org"}); err != nil {
		t.Errorf("self-signed certificate does not verify against itself: %v", err)
	}

	second, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second.Generated || !bytes.Equal(second.Certificate.Certificate[0], first.Certificate.Certificate[0]) {
		t.Error("second Load did not reuse the generated certificate")
	}

	// Within 30 days of expiry it is renewed.
	late := Config{DataDir: dir, Hosts: cfg.Hosts, Now: func() time.Time { return time.Now().Add(340 * 24 * time.Hour) }}
	renewed, err := Load(late)
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.Generated || !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("expiring certificate not renewed: Generated=%v NotAfter %v (was %v)", renewed.Generated, renewed.NotAfter, first.NotAfter)
	}
}

func TestConfiguredFiles(t *testing.T) {
	gen, err := Load(Config{DataDir: t.TempDir(), Hosts: []string{"turn.example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	// Operator files may be group-readable; only the generated key is held
	// to 0600.
	if err := os.Chmod(gen.KeyPath, 0o640); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Config{CertFile: gen.CertPath, KeyFile: gen.KeyPath})
	if err != nil {
		t.Fatal(err)
	}
	if c.Generated || c.SelfSigned || c.Leaf.Subject.CommonName != "turn.example.org" {
		t.Errorf("configured: Generated=%v SelfSigned=%v CN=%q", c.Generated, c.SelfSigned, c.Leaf.Subject.CommonName)
	}
}

func TestErrors(t *testing.T) {
	loose := t.TempDir()
	gen, err := Load(Config{DataDir: loose})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(gen.KeyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"cert without key", Config{CertFile: "a.pem"}, "needs its key file"},
		{"key without cert", Config{KeyFile: "a.pem"}, "needs its key file"},
		{"no data folder", Config{}, "data folder not set"},
		{"generated key readable by others", Config{DataDir: loose}, "chmod 600"},
		{"missing configured files", Config{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}, "no such file"},
		{"garbage", Config{CertFile: garbage, KeyFile: garbage}, "loading"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
