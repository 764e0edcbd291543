package keyring

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// specSeed is the test signing key of the spec appendices, "Cryptographic
// test vectors", with KEY_ID "ed25519:1".
const specSeed = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"

func TestLoadCreatesThenReloads(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "nested", "data")
	k1, err := Load(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Generated() {
		t.Error("first Load: Generated() = false")
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o700 {
		t.Errorf("data folder mode = %04o, want 0700", got)
	}
	st, err = os.Stat(filepath.Join(dataDir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", got)
	}
	if k1.Path() != filepath.Join(dataDir, FileName) {
		t.Errorf("Path() = %s", k1.Path())
	}
	b, err := os.ReadFile(k1.Path())
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^ed25519 (a_[A-Za-z]{4}) ([A-Za-z0-9+/]{43})\n$`)
	m := line.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("key file %q is not in Synapse's format", b)
	}
	if k1.KeyID() != "ed25519:"+m[1] {
		t.Errorf("KeyID() = %s, file version %s", k1.KeyID(), m[1])
	}
	entries, _ := os.ReadDir(dataDir)
	if len(entries) != 1 {
		t.Errorf("data folder holds %d entries, want only the key file (temp file left behind?)", len(entries))
	}

	k2, err := Load(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Generated() {
		t.Error("second Load: Generated() = true")
	}
	if k2.KeyID() != k1.KeyID() || !k2.PublicKey().Equal(k1.PublicKey()) || !k2.PrivateKey().Equal(k1.PrivateKey()) {
		t.Error("second Load returned a different key")
	}
	after, _ := os.ReadFile(k1.Path())
	if string(after) != string(b) {
		t.Error("Load rewrote an existing key file")
	}
}

func TestLoadKeepsExistingFolderMode(t *testing.T) {
	dataDir := t.TempDir()
	if err := os.Chmod(dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dataDir); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dataDir)
	if got := st.Mode().Perm(); got != 0o750 {
		t.Errorf("existing folder mode changed to %04o", got)
	}
}

// TestLoadSynapseKey loads a key file as Synapse writes it and checks the
// key against the spec's test vector: signing the canonical form of {} must
// give the signature in the spec appendices, "JSON Signing".
func TestLoadSynapseKey(t *testing.T) {
	for _, seed := range []string{specSeed, specSeed + "="} {
		dataDir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dataDir, FileName), []byte("ed25519 1 "+seed+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := Load(dataDir)
		if err != nil {
			t.Fatal(err)
		}
		if k.KeyID() != "ed25519:1" {
			t.Errorf("KeyID() = %s", k.KeyID())
		}
		sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.PrivateKey(), []byte("{}")))
		const want = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
		if sig != want {
			t.Errorf("signature of {} = %s, want the spec's %s", sig, want)
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	good := "ed25519 a_AbCd " + specSeed + "\n"
	tests := []struct {
		name    string
		body    string
		mode    os.FileMode
		wantErr string
	}{
		{"group readable", good, 0o640, "has mode 0640"},
		{"world readable", good, 0o644, "run chmod 600"},
		{"other writable", good, 0o602, "has mode 0602"},
		{"empty", "", 0o600, "file is empty"},
		{"blank lines", "\n\n  \n", 0o600, "file is empty"},
		{"two keys", good + good, 0o600, "has 2 lines"},
		{"two fields", "ed25519 " + specSeed + "\n", 0o600, "has 2 fields"},
		{"four fields", "ed25519 a_x " + specSeed + " extra\n", 0o600, "has 4 fields"},
		{"other algorithm", "curve25519 a_x " + specSeed + "\n", 0o600, `"curve25519" is not supported`},
		{"bad version", "ed25519 a-x " + specSeed + "\n", 0o600, `version "a-x"`},
		{"bad base64", "ed25519 a_x not*base64\n", 0o600, "not valid base64"},
		{"short seed", "ed25519 a_x " + specSeed[:40] + "\n", 0o600, "seed is 30 bytes"},
		{"oversized", strings.Repeat("x", maxFileSize+1), 0o600, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			p := filepath.Join(dataDir, FileName)
			if err := os.WriteFile(p, []byte(tt.body), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil { // bypass umask
				t.Fatal(err)
			}
			_, err := Load(dataDir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load() error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), specSeed[:20]) {
				t.Errorf("error quotes the key seed: %v", err)
			}
			if after, _ := os.ReadFile(p); string(after) != tt.body {
				t.Error("Load changed a file it refused")
			}
		})
	}
}

func TestLoadBadPlaces(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	keyIsDir := filepath.Join(base, "keydir")
	if err := os.MkdirAll(filepath.Join(keyIsDir, FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dataDir, wantErr string
	}{
		{"empty path", "", "data folder not set"},
		{"data folder is a file", file, "creating data folder"},
		{"key path is a folder", keyIsDir, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.dataDir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load(%q) error = %v, want it to contain %q", tt.dataDir, err, tt.wantErr)
			}
		})
	}
}

// TestLoadConcurrentFirstStart races several first starts on one folder:
// all must end up with the one key that was linked into place.
func TestLoadConcurrentFirstStart(t *testing.T) {
	dataDir := t.TempDir()
	const n = 8
	keys := make([]*Keyring, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = Load(dataDir)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Load %d: %v", i, errs[i])
		}
		if keys[i].KeyID() != keys[0].KeyID() || !keys[i].PublicKey().Equal(keys[0].PublicKey()) {
			t.Fatalf("Load %d got key %s, Load 0 got %s", i, keys[i].KeyID(), keys[0].KeyID())
		}
	}
}

func TestAccessorsReturnCopies(t *testing.T) {
	k, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	priv := k.PrivateKey()
	priv[0] ^= 0xff
	pub := k.PublicKey()
	pub[0] ^= 0xff
	if k.PrivateKey().Equal(priv) || k.PublicKey().Equal(pub) {
		t.Error("mutating a returned key changed the keyring")
	}
	if !k.PrivateKey().Public().(ed25519.PublicKey).Equal(k.PublicKey()) {
		t.Error("public key does not match private key")
	}
}

// FuzzParse checks that the key file parser never panics and accepts only a
// 32-byte seed with a valid version.
func FuzzParse(f *testing.F) {
	f.Add([]byte("ed25519 a_AbCd " + specSeed + "\n"))
	f.Add([]byte("ed25519 1 " + specSeed + "=\n\n"))
	f.Add([]byte("ed25519 a_x ====\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		version, seed, err := parse(b)
		if err != nil {
			return
		}
		if len(seed) != ed25519.SeedSize || !validVersion(version) {
			t.Fatalf("parse(%q) accepted version %q seed of %d bytes", b, version, len(seed))
		}
	})
}
