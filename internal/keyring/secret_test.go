package keyring

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s1, gen, err := Secret(dir, "cookie.key", 32)
	if err != nil || !gen || len(s1) != 32 {
		t.Fatalf("first Secret: %d bytes, generated=%v, err=%v", len(s1), gen, err)
	}
	st, err := os.Stat(filepath.Join(dir, "cookie.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, err %v", st.Mode(), err)
	}
	s2, gen, err := Secret(dir, "cookie.key", 32)
	if err != nil || gen || !bytes.Equal(s1, s2) {
		t.Fatalf("second Secret differs or regenerated (generated=%v, err=%v)", gen, err)
	}
	if err := os.Chmod(filepath.Join(dir, "cookie.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Secret(dir, "cookie.key", 32); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable secret accepted: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.key"), []byte("%%%\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Secret(dir, "bad.key", 32); err == nil {
		t.Fatal("garbage secret accepted")
	}
}
