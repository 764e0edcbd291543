package accounts

import (
	"strings"
	"testing"
)

// TestPasswordHashFormat checks the production parameters, which the other
// tests lower for speed.
func TestPasswordHashFormat(t *testing.T) {
	saved := argonCost
	argonCost.memoryKiB, argonCost.time = argonMemoryKiB, argonTime
	defer func() { argonCost = saved }()
	h, err := hashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q does not carry the argon2id parameters", h)
	}
	if !checkPassword(h, "correct horse") || checkPassword(h, "correct horsE") {
		t.Error("checkPassword does not tell the right password from a wrong one")
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	good, err := hashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	for _, h := range []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=18$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=99999999,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$!!$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "$short",
	} {
		if checkPassword(h, "pw") {
			t.Errorf("checkPassword(%q) matched", h)
		}
	}
	if !checkPassword(good, "pw") {
		t.Error("the well-formed hash does not match")
	}
}

func TestRandomString(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s, err := randomString(10, "AB")
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 10 || strings.Trim(s, "AB") != "" {
			t.Fatalf("randomString = %q", s)
		}
		seen[s] = true
	}
	if len(seen) < 90 {
		t.Errorf("only %d distinct strings of 100", len(seen))
	}
}
