package turncred

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

var now = time.Unix(1_700_000_000, 0)

// TestPasswordVector checks the construction against a value computed
// independently: printf '%s' 1700086400:@alice:example.org |
// openssl dgst -sha1 -hmac s3cret -binary | base64
func TestPasswordVector(t *testing.T) {
	user, pass := Mint([]byte("s3cret"), "@alice:example.org", 24*time.Hour, now)
	if user != "1700086400:@alice:example.org" {
		t.Errorf("username = %q", user)
	}
	if want := "UD7jjEzq2I7HtUre54NaXWzW4Y0="; pass != want {
		t.Errorf("password = %q, want %q", pass, want)
	}
}

func TestCheck(t *testing.T) {
	secret := []byte("s3cret")
	user, pass := Mint(secret, "@bob:example.org", time.Hour, now)
	tests := []struct {
		name       string
		user, pass string
		at         time.Time
		want       error
	}{
		{"valid", user, pass, now, nil},
		{"valid until the last second", user, pass, now.Add(time.Hour - time.Second), nil},
		{"expired at the expiry", user, pass, now.Add(time.Hour), ErrExpired},
		{"expired", user, pass, now.Add(2 * time.Hour), ErrExpired},
		{"wrong password", user, Password([]byte("other"), user), now, ErrWrongPassword},
		{"user changed", "1700003600:@mallory:example.org", pass, now, ErrWrongPassword},
		{"no user part", "1700003600", Password(secret, "1700003600"), now, nil},
		{"no timestamp", "@bob:example.org", pass, now, ErrMalformed},
		{"empty", "", "", now, ErrMalformed},
		{"signed timestamp", "+1700003600:@bob:example.org", pass, now, ErrMalformed},
		{"huge timestamp", "99999999999999999999:@bob", pass, now, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(secret, tt.user, tt.pass, tt.at); !errors.Is(err, tt.want) {
				t.Errorf("Check(%q) = %v, want %v", tt.user, err, tt.want)
			}
		})
	}
}

// FuzzExpiry feeds Expiry usernames as they arrive from the network (the
// relay parses them before any authentication).
func FuzzExpiry(f *testing.F) {
	for _, s := range []string{"1700003600:@bob:example.org", "", ":", "0", "1:2:3", "-1:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, username string) {
		exp, user, err := Expiry(username)
		if err != nil {
			return
		}
		// What parsed must format back to an equivalent username.
		again, user2, err := Expiry(strconv.FormatInt(exp.Unix(), 10) + ":" + user)
		if err != nil || !again.Equal(exp) || user2 != user {
			t.Fatalf("%q parsed as (%v, %q) but does not round-trip: (%v, %q, %v)", username, exp, user, again, user2, err)
		}
	})
}
