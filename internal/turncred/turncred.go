package turncred

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors Verify returns; callers branch on them to count refusals by cause.
var (
	// ErrMalformed: the username does not start with a decimal expiry.
	ErrMalformed = errors.New("turncred: username is not <expiry>:<user>")
	// ErrExpired: the expiry in the username has passed.
	ErrExpired = errors.New("turncred: credentials expired")
	// ErrWrongPassword: the password does not match the username.
	ErrWrongPassword = errors.New("turncred: wrong password")
)

// Mint returns credentials for userID that expire ttl after now. The expiry
// is rounded down to the second, as the username carries whole seconds.
func Mint(secret []byte, userID string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + userID
	return username, Password(secret, username)
}

// Password returns the password that belongs to username:
// base64(HMAC-SHA1(secret, username)) (TURN REST draft, section 2.2).
func Password(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Expiry parses the expiry and user parts of a username. The draft puts
// the timestamp first and lets the user part be absent ("<expiry>"); the
// user part may itself contain ':' (Matrix user IDs do), so only the first
// ':' separates.
func Expiry(username string) (expiry time.Time, user string, err error) {
	ts, user, _ := strings.Cut(username, ":")
	// ParseInt would take "+5" and "-5"; the draft's timestamp is digits.
	if ts == "" || len(ts) > 19 || strings.TrimLeft(ts, "0123456789") != "" {
		return time.Time{}, "", ErrMalformed
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", ErrMalformed
	}
	return time.Unix(secs, 0), user, nil
}

// Verify checks that username is well formed and not expired at now, and
// returns the password that belongs to it; a server that does not see the
// password itself (STUN long-term credentials send only an HMAC keyed with
// it) derives its key from that. The draft's section 2.2 has the server
// refuse a username whose timestamp is in the past.
func Verify(secret []byte, username string, now time.Time) (password string, err error) {
	expiry, _, err := Expiry(username)
	if err != nil {
		return "", err
	}
	if !now.Before(expiry) {
		return "", ErrExpired
	}
	return Password(secret, username), nil
}

// Check verifies username and password together, comparing the password in
// constant time.
func Check(secret []byte, username, password string, now time.Time) error {
	want, err := Verify(secret, username, now)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(password)) != 1 {
		return ErrWrongPassword
	}
	return nil
}
