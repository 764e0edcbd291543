package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"testing"
	"time"
)

const adminPath = "/_synapse/admin/v1/register"

// synapseMAC computes the MAC as Synapse's register_new_matrix_user does,
// independently of adminMAC.
func synapseMAC(secret, nonce, user, password string, admin bool, userType string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	m.Write([]byte{0})
	if admin {
		m.Write([]byte("admin"))
	} else {
		m.Write([]byte("notadmin"))
	}
	if userType != "" {
		m.Write([]byte{0})
		m.Write([]byte(userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}

func TestSharedSecretRegistration(t *testing.T) {
	const secret = "s3cret"
	// Closed registration does not stop the shared-secret API.
	forEachBackend(t, Config{Registration: RegistrationClosed, RegistrationSharedSecret: secret}, func(t *testing.T, e *env) {
		nonce := func() string {
			t.Helper()
			n, _ := e.expect("GET", adminPath, "", nil, 200, "")["nonce"].(string)
			if n == "" {
				t.Fatal("no nonce")
			}
			return n
		}
		n := nonce()
		out := e.expect("POST", adminPath, "", obj{"nonce": n, "username": "Root", "password": "pw", "admin": true,
			"mac": synapseMAC(secret, n, "Root", "pw", true, "")}, 200, "")
		if out["user_id"] != "@root:"+testServer || out["home_server"] != testServer || out["device_id"] == "" {
			t.Fatalf("register = %v", out)
		}
		s, err := e.a.Authenticate(context.Background(), out["access_token"].(string))
		if err != nil || !s.Admin || s.UserID != "@root:"+testServer {
			t.Fatalf("Authenticate = %+v, %v", s, err)
		}
		// The nonce is single-use, even after success.
		e.expect("POST", adminPath, "", obj{"nonce": n, "username": "root2", "password": "pw",
			"mac": synapseMAC(secret, n, "root2", "pw", false, "")}, 400, "")

		n = nonce()
		e.expect("POST", adminPath, "", obj{"nonce": n, "username": "bot", "password": "pw", "user_type": "bot",
			"displayname": "The Bot", "mac": synapseMAC(secret, n, "bot", "pw", false, "bot")}, 200, "")
		if name, _, _ := e.a.Profile(context.Background(), "@bot:"+testServer); name != "The Bot" {
			t.Errorf("displayname = %q", name)
		}
		e.login("bot", "pw")

		// A wrong MAC is refused, and burns the nonce.
		n = nonce()
		e.expect("POST", adminPath, "", obj{"nonce": n, "username": "eve", "password": "pw",
			"mac": synapseMAC("guess", n, "eve", "pw", false, "")}, 403, "M_FORBIDDEN")
		e.expect("POST", adminPath, "", obj{"nonce": n, "username": "eve", "password": "pw",
			"mac": synapseMAC(secret, n, "eve", "pw", false, "")}, 400, "")
		// Admin is part of the MAC.
		n = nonce()
		e.expect("POST", adminPath, "", obj{"nonce": n, "username": "eve", "password": "pw", "admin": true,
			"mac": synapseMAC(secret, n, "eve", "pw", false, "")}, 403, "M_FORBIDDEN")

		for _, c := range []struct {
			name   string
			body   func(n string) any
			status int
			code   string
		}{
			{"missing nonce", func(string) any { return obj{"username": "x", "password": "pw", "mac": "00"} }, 400, "M_BAD_JSON"},
			{"unknown nonce", func(string) any { return obj{"nonce": "nope", "username": "x", "password": "pw", "mac": "00"} }, 400, ""},
			{"missing mac", func(n string) any { return obj{"nonce": n, "username": "x", "password": "pw"} }, 400, "M_BAD_JSON"},
			{"missing username", func(n string) any { return obj{"nonce": n, "password": "pw", "mac": "00"} }, 400, ""},
			{"bad user type", func(n string) any {
				return obj{"nonce": n, "username": "x", "password": "pw", "user_type": "owl", "mac": "00"}
			}, 400, ""},
			{"taken", func(n string) any {
				return obj{"nonce": n, "username": "root", "password": "pw", "mac": synapseMAC(secret, n, "root", "pw", false, "")}
			}, 400, "M_USER_IN_USE"},
			{"invalid name", func(n string) any {
				return obj{"nonce": n, "username": "a b", "password": "pw", "mac": synapseMAC(secret, n, "a b", "pw", false, "")}
			}, 400, "M_INVALID_USERNAME"},
			{"not json", func(string) any { return "{" }, 400, "M_NOT_JSON"},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.expect("POST", adminPath, "", c.body(nonce()), c.status, c.code)
			})
		}

		// Nonces expire after a minute.
		n = nonce()
		e.clock.Advance(61 * time.Second)
		e.expect("POST", adminPath, "", obj{"nonce": n, "username": "late", "password": "pw",
			"mac": synapseMAC(secret, n, "late", "pw", false, "")}, 400, "")
	})
}

func TestSharedSecretDisabled(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		out := e.expect("GET", adminPath, "", nil, 400, "")
		if out["error"] != "Shared secret registration is not enabled" {
			t.Errorf("GET = %v", out)
		}
		e.expect("POST", adminPath, "", obj{"nonce": "x"}, 400, "")
	})
}

func TestAdminMACMatchesSynapse(t *testing.T) {
	ut := "support"
	for _, c := range []struct {
		admin    bool
		userType *string
	}{{false, nil}, {true, nil}, {false, &ut}, {true, &ut}} {
		want := synapseMAC("k", "n", "u", "p", c.admin, func() string {
			if c.userType == nil {
				return ""
			}
			return *c.userType
		}())
		if got := adminMAC("k", "n", "u", "p", c.admin, c.userType); got != want {
			t.Errorf("adminMAC(admin=%v, type=%v) = %s, want %s", c.admin, c.userType, got, want)
		}
	}
}
