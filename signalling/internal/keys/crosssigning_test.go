package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/plexus-chat/plexus/internal/signing"
)

const (
	pSigning    = "/_matrix/client/v3/keys/device_signing/upload"
	pSignatures = "/_matrix/client/v3/keys/signatures/upload"
)

// crossKeyText is an unsigned cross-signing key object.
func crossKeyText(user, usage string, kp keyPair) string {
	return fmt.Sprintf(`{"user_id": %q, "usage": [%q], "keys": {"ed25519:%s": %q}}`, user, usage, kp.id, kp.id)
}

// crossSet is a user's cross-signing keys and their uploaded objects.
type crossSet struct {
	master, ssk, usk          keyPair
	masterRaw, sskRaw, uskRaw []byte
}

func newCrossSet(t *testing.T, user string) crossSet {
	c := crossSet{master: newKeyPair(t), ssk: newKeyPair(t), usk: newKeyPair(t)}
	c.masterRaw = []byte(crossKeyText(user, "master", c.master))
	c.sskRaw = signText(t, crossKeyText(user, "self_signing", c.ssk), user, "ed25519:"+c.master.id, c.master.priv)
	c.uskRaw = signText(t, crossKeyText(user, "user_signing", c.usk), user, "ed25519:"+c.master.id, c.master.priv)
	return c
}

func (c crossSet) body(auth string) string {
	b := fmt.Sprintf(`{"master_key": %s, "self_signing_key": %s, "user_signing_key": %s`, c.masterRaw, c.sskRaw, c.uskRaw)
	if auth != "" {
		b += `, "auth": ` + auth
	}
	return b + "}"
}

type queryAnswer struct {
	DeviceKeys  map[string]map[string]json.RawMessage `json:"device_keys"`
	Master      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigning map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigning map[string]json.RawMessage            `json:"user_signing_keys"`
}

func TestCrossSigning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		devKP := newKeyPair(t)
		dk := deviceKeysText(t, alice, "ALICE1", devKP)
		e.ok("POST", pUpload, "alice1", `{"device_keys": `+string(dk)+`}`, nil)
		a, b := newCrossSet(t, alice), newCrossSet(t, bob)

		// First upload needs no authentication, nor does the same again.
		e.ok("POST", pSigning, "alice1", a.body(""), nil)
		e.ok("POST", pSigning, "alice1", a.body(""), nil)

		carolMaster := newKeyPair(t)
		e.setDevices(carol, "CAROL1", carolMaster.id)
		bad := []struct {
			name, token, body string
			status            int
			code              string
		}{
			{"no master key to verify with", "bob1", `{"self_signing_key": ` + string(b.sskRaw) + `}`, 400, "M_MISSING_PARAM"},
			{"someone else's self-signing key", "bob1",
				fmt.Sprintf(`{"master_key": %s, "self_signing_key": %s}`, b.masterRaw, a.sskRaw), 400, "M_INVALID_PARAM"},
			{"bad signature", "bob1", fmt.Sprintf(`{"master_key": %s, "self_signing_key": %s}`, b.masterRaw,
				signText(t, crossKeyText(bob, "self_signing", b.ssk), bob, "ed25519:"+b.master.id, b.ssk.priv)), 400, CodeInvalidSignature},
			{"wrong usage", "bob1", `{"master_key": ` + crossKeyText(bob, "self_signing", b.master) + `}`, 400, "M_INVALID_PARAM"},
			{"two keys", "bob1", fmt.Sprintf(`{"master_key": {"user_id": %q, "usage": ["master"], "keys": {"ed25519:%s": %q, "ed25519:x": "x"}}}`,
				bob, b.master.id, b.master.id), 400, "M_INVALID_PARAM"},
			{"not an object", "bob1", `{"master_key": "x"}`, 400, "M_BAD_JSON"},
			{"key ID is a device ID", "carol1", `{"master_key": ` + crossKeyText(carol, "master", carolMaster) + `}`, 403, "M_FORBIDDEN"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				st, out := e.do("POST", pSigning, tt.token, tt.body)
				wantError(t, st, out, tt.status, tt.code)
			})
		}
		e.ok("POST", pSigning, "bob1", fmt.Sprintf(`{"master_key": %s, "self_signing_key": %s}`, b.masterRaw, b.sskRaw), nil)

		before := e.token()
		// Alice signs her device with her self-signing key, her master key
		// with her device, and Bob's master key with her user-signing key.
		devSigned := addSignature(t, dk, alice, "ed25519:"+a.ssk.id, a.ssk.priv)
		masterSigned := addSignature(t, a.masterRaw, alice, "ed25519:ALICE1", devKP.priv)
		bobSigned := addSignature(t, b.masterRaw, alice, "ed25519:"+a.usk.id, a.usk.priv)
		var res struct {
			Failures map[string]map[string]struct {
				Code string `json:"errcode"`
			} `json:"failures"`
		}
		e.ok("POST", pSignatures, "alice1", fmt.Sprintf(`{%q: {"ALICE1": %s, %q: %s, "ALICE2": %s}, %q: {%q: %s}}`,
			alice, devSigned, a.master.id, masterSigned, devSigned, bob, b.master.id, bobSigned), &res)
		if len(res.Failures) != 1 || res.Failures[alice]["ALICE2"].Code != "M_NOT_FOUND" {
			t.Fatalf("failures = %+v", res.Failures)
		}

		// Failures are per object.
		tampered := addSignature(t, deviceKeysText(t, alice, "ALICE1", newKeyPair(t)), alice, "ed25519:"+a.ssk.id, a.ssk.priv)
		forged := addSignature(t, dk, alice, "ed25519:"+a.ssk.id, newKeyPair(t).priv)
		for _, tt := range []struct {
			name, token, body, user, key, code string
		}{
			{"object does not match the key", "alice1", fmt.Sprintf(`{%q: {"ALICE1": %s}}`, alice, tampered), alice, "ALICE1", CodeInvalidSignature},
			{"signature does not verify", "alice1", fmt.Sprintf(`{%q: {"ALICE1": %s}}`, alice, forged), alice, "ALICE1", CodeInvalidSignature},
			{"no signature of ours", "alice1", fmt.Sprintf(`{%q: {"ALICE1": %s}}`, alice, dk), alice, "ALICE1", CodeInvalidSignature},
			{"no user-signing key", "bob1", fmt.Sprintf(`{%q: {%q: %s}}`, alice, a.master.id, a.masterRaw), alice, a.master.id, "M_NOT_FOUND"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				e.ok("POST", pSignatures, tt.token, tt.body, &res)
				if got := res.Failures[tt.user][tt.key].Code; got != tt.code {
					t.Fatalf("failure = %+v, want %s", res.Failures, tt.code)
				}
			})
		}

		// Alice sees every signature, all verifying.
		var q queryAnswer
		e.ok("POST", pQuery, "alice1", `{"device_keys": {"@alice:test.local": [], "@bob:test.local": []}}`, &q)
		verify := func(what string, obj []byte, signer, keyID, pubID string) {
			t.Helper()
			pub, _ := signing.DecodeBase64(pubID)
			if err := signing.VerifyJSON(obj, signer, keyID, pub); err != nil {
				t.Fatalf("%s: %v in %s", what, err, obj)
			}
		}
		verify("device by itself", q.DeviceKeys[alice]["ALICE1"], alice, "ed25519:ALICE1", devKP.id)
		verify("device by self-signing key", q.DeviceKeys[alice]["ALICE1"], alice, "ed25519:"+a.ssk.id, a.ssk.id)
		verify("master by device", q.Master[alice], alice, "ed25519:ALICE1", devKP.id)
		verify("bob's master by alice", q.Master[bob], alice, "ed25519:"+a.usk.id, a.usk.id)
		if !bytes.Equal(q.SelfSigning[alice], a.sskRaw) || !bytes.Equal(q.UserSigning[alice], a.uskRaw) {
			t.Fatalf("alice's keys not byte-exact:\n%s\n%s", q.SelfSigning[alice], q.UserSigning[alice])
		}
		if _, ok := q.UserSigning[bob]; ok || !bytes.Equal(q.SelfSigning[bob], b.sskRaw) {
			t.Fatalf("bob's keys as alice sees them: %+v", q)
		}

		// Bob sees neither Alice's user-signing key nor its signature.
		q = queryAnswer{}
		e.ok("POST", pQuery, "bob1", `{"device_keys": {"@alice:test.local": [], "@bob:test.local": []}}`, &q)
		if !bytes.Equal(q.Master[bob], b.masterRaw) || len(q.UserSigning) != 0 {
			t.Fatalf("bob's view: master %s, user-signing %v", q.Master[bob], q.UserSigning)
		}

		// Alice's own signatures change her device list for all; the one
		// on Bob's key only for her.
		if got := e.changes("alice1", before, ""); fmt.Sprint(got) != fmt.Sprint([]string{alice, bob}) {
			t.Fatalf("alice's changes = %v", got)
		}
		if got := e.changes("bob1", before, ""); fmt.Sprint(got) != fmt.Sprint([]string{alice}) {
			t.Fatalf("bob's changes = %v", got)
		}

		// Replacing keys needs the password.
		a2 := newCrossSet(t, alice)
		st, out := e.do("POST", pSigning, "alice1", a2.body(""))
		var uia struct {
			Code    string `json:"errcode"`
			Session string `json:"session"`
			Flows   []struct {
				Stages []string `json:"stages"`
			} `json:"flows"`
			Params map[string]any `json:"params"`
		}
		if err := json.Unmarshal(out, &uia); err != nil || st != 401 || uia.Code != "" || uia.Session == "" ||
			len(uia.Flows) != 1 || fmt.Sprint(uia.Flows[0].Stages) != "[m.login.password]" || uia.Params == nil {
			t.Fatalf("challenge: %d %s", st, out)
		}
		auth := func(user, pw string) string {
			return fmt.Sprintf(`{"type": "m.login.password", "session": %q, "identifier": {"type": "m.id.user", "user": %q}, "password": %q}`,
				uia.Session, user, pw)
		}
		st, out = e.do("POST", pSigning, "alice1", a2.body(auth("alice", "wrong")))
		if err := json.Unmarshal(out, &uia); err != nil || st != 401 || uia.Code != "M_FORBIDDEN" || len(uia.Flows) != 1 {
			t.Fatalf("wrong password: %d %s", st, out)
		}
		st, out = e.do("POST", pSigning, "alice1", a2.body(auth(bob, "secret-of-"+bob)))
		wantError(t, st, out, 403, "M_FORBIDDEN")
		q = queryAnswer{}
		e.ok("POST", pQuery, "alice1", `{"device_keys": {"@alice:test.local": []}}`, &q)
		if !bytes.Contains(q.Master[alice], []byte(a.master.id)) {
			t.Fatalf("master key replaced without authentication: %s", q.Master[alice])
		}
		e.ok("POST", pSigning, "alice1", a2.body(auth("alice", "secret-of-"+alice)), nil)
		q = queryAnswer{}
		e.ok("POST", pQuery, "alice1", `{"device_keys": {"@alice:test.local": []}}`, &q)
		if !bytes.Equal(q.Master[alice], a2.masterRaw) || !bytes.Equal(q.SelfSigning[alice], a2.sskRaw) {
			t.Fatalf("after replacement: %s %s", q.Master[alice], q.SelfSigning[alice])
		}
	})
}
