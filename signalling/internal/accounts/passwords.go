package accounts

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Password hashing: argon2id with OWASP's minimum parameters (19 MiB,
// two passes, one lane), stored in the PHC string format so that the
// parameters travel with each hash and can be raised later without
// invalidating existing passwords.
const (
	argonMemoryKiB = 19456
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16

	// maxPasswordLen bounds what we hash, as Synapse does (512).
	maxPasswordLen = 512
)

var b64 = base64.RawStdEncoding // PHC strings use unpadded standard base64

// hashSlots bounds the argon2 computations running at once. Each takes
// 19 MiB and tens of milliseconds of a core, so a burst of a thousand
// logins or sign-ups would otherwise need gigabytes at once; beyond the
// cores' worth, more parallelism only adds memory.
var hashSlots = make(chan struct{}, 2*runtime.GOMAXPROCS(0))

// argonKey is argon2.IDKey inside a hashing slot.
func argonKey(password, salt []byte, t, m uint32, p uint8, n uint32) []byte {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	return argon2.IDKey(password, salt, t, m, p, n)
}

// argonCost is what new hashes use. Only tests lower it, to keep hundreds
// of hashes under the race detector fast; verification always uses the
// parameters stored in the hash.
var argonCost = struct{ memoryKiB, time uint32 }{argonMemoryKiB, argonTime}

// hashPassword returns the PHC string of password's argon2id hash.
func hashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("accounts: salt: %w", err)
	}
	m, t := argonCost.memoryKiB, argonCost.time
	key := argonKey([]byte(password), salt, t, m, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, m, t, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

var errBadHash = errors.New("accounts: malformed password hash")

// checkPassword reports whether password matches the PHC string hash. An
// empty or malformed hash matches nothing.
func checkPassword(hash, password string) bool {
	ok, err := verifyPassword(hash, password)
	return err == nil && ok
}

func verifyPassword(hash, password string) (bool, error) {
	// $argon2id$v=19$m=19456,t=2,p=1$salt$key
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, errBadHash
	}
	// Bounds keep a corrupted row from costing gigabytes or minutes.
	if m < 8 || m > 1<<21 || t < 1 || t > 16 || p < 1 || p > 16 {
		return false, errBadHash
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, errBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 128 {
		return false, errBadHash
	}
	got := argonKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is hashed against when the user does not exist, so that a
// failed login takes as long for an unknown user as for a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, err := hashPassword("plexus dummy password")
	if err != nil {
		return ""
	}
	return h
})
