package keyring

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Secret loads the random secret kept in file name inside dataDir,
// creating it (size random bytes, base64 on one line, mode 0600) if it
// does not exist. Like the signing key it is refused when group or others
// can read it, and it is installed without ever leaving a half-written
// file. generated reports whether this call created it.
func Secret(dataDir, name string, size int) (secret []byte, generated bool, err error) {
	path := filepath.Join(dataDir, name)
	secret, err = loadSecret(path)
	if err == nil {
		return secret, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("keyring: %w", err)
	}
	secret = make([]byte, size)
	if _, err := rand.Read(secret); err != nil {
		return nil, false, fmt.Errorf("keyring: generating %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(dataDir, "."+name+"-*")
	if err != nil {
		return nil, false, fmt.Errorf("keyring: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(base64.StdEncoding.EncodeToString(secret) + "\n")
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, false, fmt.Errorf("keyring: writing %s: %w", name, werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			s, err := loadSecret(path)
			return s, false, err
		}
		return nil, false, fmt.Errorf("keyring: installing %s: %w", name, err)
	}
	syncDir(dataDir)
	return secret, true, nil
}

func loadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keyring: %s has mode %04o, but a secret must be accessible only by its owner: run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring: reading %s: %w", path, err)
	}
	s, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(s) == 0 {
		return nil, fmt.Errorf("keyring: %s does not hold a base64 secret", path)
	}
	return s, nil
}
