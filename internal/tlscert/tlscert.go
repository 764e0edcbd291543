package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names of the generated certificate inside the data folder.
const (
	CertFileName = "tls.crt"
	KeyFileName  = "tls.key"
)

const (
	validity   = 365 * 24 * time.Hour
	renewAhead = 30 * 24 * time.Hour
)

// Config says where the certificate comes from.
type Config struct {
	// CertFile and KeyFile are PEM files of a configured certificate chain
	// and its key. Both set: Load reads them; both empty: Load uses the
	// generated certificate in DataDir. One without the other is an error.
	CertFile, KeyFile string
	// DataDir holds the generated certificate.
	DataDir string
	// Hosts are the DNS names and IP addresses a generated certificate
	// names; the first is also its subject's common name.
	Hosts []string
	// Now is the clock used for validity; nil means time.Now.
	Now func() time.Time
}

// Cert is a loaded certificate.
type Cert struct {
	tls.Certificate
	// CertPath and KeyPath are the files it was read from or written to.
	CertPath, KeyPath string
	// Generated reports that this Load created or renewed it.
	Generated bool
	// SelfSigned reports that it is the generated certificate, which
	// clients verifying certificates will not accept.
	SelfSigned bool
	// NotAfter is when the leaf certificate expires.
	NotAfter time.Time
}

// Load returns the configured certificate, or the generated one, creating
// or renewing it as needed.
func Load(cfg Config) (*Cert, error) {
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	switch {
	case cfg.CertFile != "" && cfg.KeyFile != "":
		return loadFiles(cfg.CertFile, cfg.KeyFile, false)
	case cfg.CertFile != "" || cfg.KeyFile != "":
		return nil, errors.New("tlscert: a certificate file needs its key file and the other way round")
	case cfg.DataDir == "":
		return nil, errors.New("tlscert: data folder not set")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("tlscert: creating data folder: %w", err)
	}
	certPath := filepath.Join(cfg.DataDir, CertFileName)
	keyPath := filepath.Join(cfg.DataDir, KeyFileName)
	c, err := loadFiles(certPath, keyPath, true)
	switch {
	case err == nil && now().Add(renewAhead).Before(c.NotAfter):
		return c, nil
	case err == nil, errors.Is(err, fs.ErrNotExist):
		// Expiring, or not there yet: (re)generate.
	default:
		return nil, err
	}
	if err := generate(certPath, keyPath, cfg.Hosts, now()); err != nil {
		return nil, err
	}
	c, err = loadFiles(certPath, keyPath, true)
	if err != nil {
		return nil, err
	}
	c.Generated = true
	return c, nil
}

func loadFiles(certPath, keyPath string, ours bool) (*Cert, error) {
	if ours {
		// The generated key lives beside the signing key and is held to
		// the same rule: readable by its owner only. A configured key is
		// the operator's to manage (a group such as ssl-cert is common).
		st, err := os.Stat(keyPath)
		if err != nil {
			return nil, err
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("tlscert: %s has mode %04o, but a private key must be accessible only by its owner: run chmod 600 %s", keyPath, perm, keyPath)
		}
	}
	kp, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("tlscert: loading %s and %s: %w", certPath, keyPath, err)
	}
	return &Cert{
		Certificate: kp,
		CertPath:    certPath,
		KeyPath:     keyPath,
		SelfSigned:  ours,
		NotAfter:    kp.Leaf.NotAfter,
	}, nil
}

func generate(certPath, keyPath string, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tlscert: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("tlscert: generating serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "plexus"},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clocks lag
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for i, h := range hosts {
		if i == 0 {
			tmpl.Subject.CommonName = h
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("tlscert: creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("tlscert: encoding key: %w", err)
	}
	// The key goes in first: a crash between the two leaves a new key with
	// the old certificate, which fails to load as a pair and is regenerated
	// rather than served.
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// writeFile replaces path atomically with a 0600 file holding b.
func writeFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*") // mode 0600
	if err != nil {
		return fmt.Errorf("tlscert: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("tlscert: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("tlscert: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tlscert: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tlscert: installing %s: %w", path, err)
	}
	return nil
}
