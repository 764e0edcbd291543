package keyring

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
)

// FileName is the key file's name inside the data folder.
const FileName = "signing.key"

// maxFileSize bounds what Load reads: a key line is about 60 bytes, so a
// larger file is not a key and must not be slurped into memory.
const maxFileSize = 4096

// Keyring holds the server's signing key. It is immutable and safe for
// concurrent use.
type Keyring struct {
	keyID     string
	priv      ed25519.PrivateKey
	pub       ed25519.PublicKey
	path      string
	generated bool
}

// Load returns the signing key in dataDir, creating dataDir (mode 0700) and a
// new key file (mode 0600) when there is none yet. It refuses a key file
// that group or others may access, and one whose contents are not exactly
// one ed25519 key line.
func Load(dataDir string) (*Keyring, error) {
	if dataDir == "" {
		return nil, errors.New("keyring: data folder not set")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: creating data folder: %w", err)
	}
	path := filepath.Join(dataDir, FileName)
	k, err := load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(path)
	}
	return k, err
}

// KeyID returns the key ID, e.g. "ed25519:a_AbCd".
func (k *Keyring) KeyID() string { return k.keyID }

// PublicKey returns a copy of the public key.
func (k *Keyring) PublicKey() ed25519.PublicKey { return bytes.Clone(k.pub) }

// PrivateKey returns a copy of the private key; the copy keeps callers from
// corrupting the key every other goroutine signs with.
func (k *Keyring) PrivateKey() ed25519.PrivateKey { return bytes.Clone(k.priv) }

// Path returns the key file's path.
func (k *Keyring) Path() string { return k.path }

// Generated reports whether this Load created the key, so that start-up can
// say so: a new key on a server that had one means the data folder was lost.
func (k *Keyring) Generated() bool { return k.generated }

func load(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // ErrNotExist is checked by the caller
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keyring: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keyring: %s has mode %04o, but a signing key must be accessible only by its owner: run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring: reading %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("keyring: %s is larger than %d bytes, so it is not a signing key file", path, maxFileSize)
	}
	version, seed, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("keyring: %s: %w", path, err)
	}
	return newKeyring(path, version, seed), nil
}

func newKeyring(path, version string, seed []byte) *Keyring {
	priv := ed25519.NewKeyFromSeed(seed)
	return &Keyring{
		keyID: "ed25519:" + version,
		priv:  priv,
		pub:   priv.Public().(ed25519.PublicKey),
		path:  path,
	}
}

// parse reads Synapse's key file format: one line "ed25519 VERSION SEED".
// Errors never quote the seed.
func parse(b []byte) (version string, seed []byte, err error) {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	switch len(lines) {
	case 0:
		return "", nil, errors.New("file is empty; delete it to have a new key generated, or restore it from a backup")
	case 1:
	default:
		return "", nil, fmt.Errorf("file has %d lines, want exactly one key line", len(lines))
	}
	fields := strings.Fields(lines[0])
	if len(fields) != 3 {
		return "", nil, fmt.Errorf("key line has %d fields, want 3: \"ed25519 <version> <base64 seed>\"", len(fields))
	}
	if fields[0] != "ed25519" {
		return "", nil, fmt.Errorf("key algorithm %q is not supported, want ed25519", fields[0])
	}
	version = fields[1]
	if !validVersion(version) {
		return "", nil, fmt.Errorf("key version %q must be made of letters, digits and '_'", version)
	}
	// Synapse writes unpadded base64 but its reader accepts padding too.
	seed, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(fields[2], "="))
	if err != nil {
		return "", nil, errors.New("key seed is not valid base64")
	}
	if len(seed) != ed25519.SeedSize {
		return "", nil, fmt.Errorf("key seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return version, seed, nil
}

// validVersion: the spec's Server Keys definition says a key version "must
// have characters matching the regular expression [a-zA-Z0-9_]".
func validVersion(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// create generates a key and writes it to path without ever leaving a
// half-written file there: it writes a temporary file, syncs it, and links it
// into place, which fails if another process won the race, in which case the
// winner's key is loaded instead.
func create(path string) (*Keyring, error) {
	version, err := newVersion()
	if err != nil {
		return nil, err
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("keyring: generating key: %w", err)
	}
	line := fmt.Sprintf("ed25519 %s %s\n", version, base64.RawStdEncoding.EncodeToString(seed))

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+FileName+"-*") // CreateTemp uses mode 0600
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(line); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("keyring: writing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("keyring: writing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("keyring: writing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return load(path)
		}
		return nil, fmt.Errorf("keyring: installing key file: %w", err)
	}
	syncDir(dir)
	k := newKeyring(path, version, seed)
	k.generated = true
	return k, nil
}

// syncDir makes the new directory entry durable. It is best effort: some
// file systems refuse to sync a directory, and the key file itself is
// already synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// newVersion returns "a_" and four random letters, as Synapse's
// generate_signing_key does, so our key IDs look like everyone else's.
func newVersion() (string, error) {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := []byte("a_XXXX")
	for i := 2; i < len(b); i++ {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(letters))))
		if err != nil {
			return "", fmt.Errorf("keyring: generating key version: %w", err)
		}
		b[i] = letters[n.Int64()]
	}
	return string(b), nil
}
