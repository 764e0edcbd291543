package pdu

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
)

const testTS = 1_700_000_000_000

// addSig signs obj's redacted form as server with key and adds the
// signature, as another server would.
func addSig(t testing.TB, v *Version, obj cjson.Value, server ServerName, keyID string, key ed25519.PrivateKey) cjson.Value {
	t.Helper()
	out, err := SignEvent(v, obj, server, keyID, key)
	if err != nil {
		t.Fatalf("SignEvent: %v", err)
	}
	return out
}

// TestVerifySignatures follows server-server API, "Validating hashes and
// signatures on received events", and rooms v5+ "Signing key validity
// period": signatures are checked on the redacted event; unknown keys and
// keys expired before origin_server_ts are skipped; every other signature
// of a required server must verify and at least one must.
func TestVerifySignatures(t *testing.T) {
	v := MustVersion("12")
	key1, key2, otherKey := specKey(t), seededKey(2), seededKey(3)
	base := validEventObject(t, v) // signed by domain with ed25519:1
	valid := VerifyKey{Key: pub(key1), ValidUntilTS: testTS + 1}
	tests := []struct {
		name      string
		obj       cjson.Value
		keys      keyring
		ok        bool
		badServer ServerName
	}{
		{"good", base, keyring{"domain": {"ed25519:1": valid}}, true, ""},
		{"key valid exactly until origin_server_ts", base, keyring{"domain": {"ed25519:1": {Key: pub(key1), ValidUntilTS: testTS}}}, true, ""},
		{"key expired before origin_server_ts", base, keyring{"domain": {"ed25519:1": {Key: pub(key1), ValidUntilTS: testTS - 1}}}, false, "domain"},
		{"key expired long before", base, keyring{"domain": {"ed25519:1": {Key: pub(key1), ValidUntilTS: 0}}}, false, "domain"},
		{"unknown key", base, keyring{}, false, "domain"},
		{"key known under another ID", base, keyring{"domain": {"ed25519:2": valid}}, false, "domain"},
		{"key known for another server", base, keyring{"other": {"ed25519:1": valid}}, false, "domain"},
		{"wrong public key", base, keyring{"domain": {"ed25519:1": {Key: pub(otherKey), ValidUntilTS: testTS}}}, false, "domain"},
		{"bad public key length", base, keyring{"domain": {"ed25519:1": {Key: pub(key1)[:31], ValidUntilTS: testTS}}}, false, "domain"},
		{"no signatures", base.With("signatures", cjson.Obj()), keyring{"domain": {"ed25519:1": valid}}, false, "domain"},
		{"signed by another server only", addSig(t, v, base.With("signatures", cjson.Obj()), "other", "ed25519:1", key1),
			keyring{"domain": {"ed25519:1": valid}, "other": {"ed25519:1": valid}}, false, "domain"},
		{"only unknown algorithms", base.With("signatures", mustJSON(t, `{"domain":{"ed448:1":"x"}}`)), keyring{"domain": {"ed25519:1": valid}}, false, "domain"},
		{"server entry not an object", base.With("signatures", mustJSON(t, `{"domain":"x"}`)), keyring{"domain": {"ed25519:1": valid}}, false, "domain"},
		{"signature not a string", base.With("signatures", mustJSON(t, `{"domain":{"ed25519:1":7}}`)), keyring{"domain": {"ed25519:1": valid}}, false, "domain"},
		{"signature not base64", base.With("signatures", mustJSON(t, `{"domain":{"ed25519:1":"!!"}}`)), keyring{"domain": {"ed25519:1": valid}}, false, "domain"},
		// The signature covers the redacted event only.
		{"non-essential content changed", withContent(base, "body", cjson.Str("edited")), keyring{"domain": {"ed25519:1": valid}}, true, ""},
		{"unsigned changed", base.With("unsigned", mustJSON(t, `{"age":1}`)), keyring{"domain": {"ed25519:1": valid}}, true, ""},
		{"redacted copy", Redact(v, base), keyring{"domain": {"ed25519:1": valid}}, true, ""},
		{"type changed", base.With("type", cjson.Str("m.room.other")), keyring{"domain": {"ed25519:1": valid}}, false, "domain"},
		{"depth changed", base.With("depth", cjson.Integer(1)), keyring{"domain": {"ed25519:1": valid}}, false, "domain"},
		{"hash changed", base.With("hashes", mustJSON(t, `{"sha256":"AAAA"}`)), keyring{"domain": {"ed25519:1": valid}}, false, "domain"},
		// Several keys of the sender's server.
		{"second signature from unknown key skipped", addSig(t, v, base, "domain", "ed25519:2", key2), keyring{"domain": {"ed25519:1": valid}}, true, ""},
		{"second signature from known key also good", addSig(t, v, base, "domain", "ed25519:2", key2),
			keyring{"domain": {"ed25519:1": valid, "ed25519:2": {Key: pub(key2), ValidUntilTS: testTS}}}, true, ""},
		{"second signature from known key bad", addSig(t, v, base, "domain", "ed25519:2", key2),
			keyring{"domain": {"ed25519:1": valid, "ed25519:2": {Key: pub(otherKey), ValidUntilTS: testTS}}}, false, "domain"},
		{"bad signature from expired key skipped", addSig(t, v, base, "domain", "ed25519:0", otherKey),
			keyring{"domain": {"ed25519:1": valid, "ed25519:0": {Key: pub(key2), ValidUntilTS: testTS - 1}}}, true, ""},
		{"expired key, other key good", addSig(t, v, base, "domain", "ed25519:2", key2),
			keyring{"domain": {"ed25519:1": {Key: pub(key1), ValidUntilTS: 1}, "ed25519:2": {Key: pub(key2), ValidUntilTS: testTS}}}, true, ""},
		{"signature from another server ignored", addSig(t, v, base, "other", "ed25519:1", otherKey), keyring{"domain": {"ed25519:1": valid}}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewEvent(tt.obj, v)
			if err != nil {
				t.Fatalf("NewEvent: %v", err)
			}
			err = VerifySignatures(e, tt.keys.find)
			checkSigErr(t, err, tt.ok, tt.badServer)
		})
	}
}

func checkSigErr(t *testing.T, err error, ok bool, badServer ServerName) {
	t.Helper()
	if ok {
		if err != nil {
			t.Errorf("VerifySignatures: %v, want success", err)
		}
		return
	}
	var se *SignatureError
	if !errors.As(err, &se) {
		t.Fatalf("VerifySignatures error = %v (%T), want *SignatureError", err, err)
	}
	if se.Server != badServer {
		t.Errorf("SignatureError server = %q (%v), want %q", se.Server, err, badServer)
	}
}

// TestRestrictedJoinSignatures checks that a join through a restricted
// join rule must also be signed by the server of the user in
// join_authorised_via_users_server (auth rules v8+, 4.2 / v12 5.2).
func TestRestrictedJoinSignatures(t *testing.T) {
	v := MustVersion("11")
	joiner, resident := seededKey(4), seededKey(5)
	join := func(content string) cjson.Value {
		p := Proto{
			Type: TypeMember, StateKey: strPtr("@joiner:joiner.example"), Sender: "@joiner:joiner.example",
			RoomID: "!room:resident.example", Content: mustJSON(t, content),
			PrevEvents: fakeEventIDs(1), AuthEvents: fakeEventIDs(3), Depth: 10, OriginServerTS: testTS,
		}
		return mustBuild(t, v, p, Signer{Server: "joiner.example", KeyID: "ed25519:j", Key: joiner}).Object()
	}
	keys := keyring{
		"joiner.example":   {"ed25519:j": {Key: pub(joiner), ValidUntilTS: testTS}},
		"resident.example": {"ed25519:r": {Key: pub(resident), ValidUntilTS: testTS}},
	}
	const via = `"join_authorised_via_users_server":"@admin:resident.example"`
	restricted := join(`{"membership":"join",` + via + `}`)
	tests := []struct {
		name      string
		obj       cjson.Value
		signers   []ServerName
		ok        bool
		badServer ServerName
	}{
		{"both signed", addSig(t, v, restricted, "resident.example", "ed25519:r", resident),
			[]ServerName{"joiner.example", "resident.example"}, true, ""},
		{"authorising server missing", restricted,
			[]ServerName{"joiner.example", "resident.example"}, false, "resident.example"},
		{"authorising server signed with unknown key", addSig(t, v, restricted, "resident.example", "ed25519:x", resident),
			[]ServerName{"joiner.example", "resident.example"}, false, "resident.example"},
		{"authorising server signature bad", addSig(t, v, restricted, "resident.example", "ed25519:r", joiner),
			[]ServerName{"joiner.example", "resident.example"}, false, "resident.example"},
		{"sender's server missing", addSig(t, v, restricted.With("signatures", cjson.Obj()), "resident.example", "ed25519:r", resident),
			[]ServerName{"joiner.example", "resident.example"}, false, "joiner.example"},
		{"authorising user on sender's server", join(`{"membership":"join","join_authorised_via_users_server":"@admin:joiner.example"}`),
			[]ServerName{"joiner.example"}, true, ""},
		{"plain join", join(`{"membership":"join"}`), []ServerName{"joiner.example"}, true, ""},
		{"authorising user not a user ID", join(`{"membership":"join","join_authorised_via_users_server":"admin"}`),
			[]ServerName{"joiner.example"}, true, ""},
		{"authorising user not a string", join(`{"membership":"join","join_authorised_via_users_server":1}`),
			[]ServerName{"joiner.example"}, true, ""},
		// Like Synapse and gomatrixserverlib, only joins need the extra
		// signature at this step; auth rule 4.2 applies to the others.
		{"leave with authorising user", join(`{"membership":"leave",` + via + `}`), []ServerName{"joiner.example"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewEvent(tt.obj, v)
			if err != nil {
				t.Fatalf("NewEvent: %v", err)
			}
			got := RequiredSigners(e)
			if len(got) != len(tt.signers) {
				t.Fatalf("RequiredSigners = %v, want %v", got, tt.signers)
			}
			for i := range got {
				if got[i] != tt.signers[i] {
					t.Errorf("RequiredSigners = %v, want %v", got, tt.signers)
				}
			}
			checkSigErr(t, VerifySignatures(e, keys.find), tt.ok, tt.badServer)
		})
	}
}

// TestRequiredSignersNonMember checks that join_authorised_via_users_server
// matters on m.room.member only.
func TestRequiredSignersNonMember(t *testing.T) {
	v := MustVersion("12")
	obj := withContent(validEventObject(t, v), "membership", cjson.Str("join"))
	obj = withContent(obj, "join_authorised_via_users_server", cjson.Str("@admin:other"))
	e, err := NewEvent(obj, v)
	if err != nil {
		t.Fatal(err)
	}
	if got := RequiredSigners(e); len(got) != 1 || got[0] != "domain" {
		t.Errorf("RequiredSigners = %v, want [domain]", got)
	}
}

// TestSignEvent checks that SignEvent signs the redacted form and adds the
// signature to the full event, keeping other signatures, unsigned and
// content (server-server API, "Signing events").
func TestSignEvent(t *testing.T) {
	for _, v := range versions() {
		t.Run("v"+v.ID, func(t *testing.T) {
			obj := validEventObject(t, v).With("unsigned", mustJSON(t, `{"age":3}`))
			out := addSig(t, v, obj, "other", "ed25519:o", seededKey(6))
			for _, key := range []string{"content", "unsigned", "hashes", "type"} {
				a, _ := obj.Get(key)
				b, _ := out.Get(key)
				if !a.Equal(b) {
					t.Errorf("%s changed: %s -> %s", key, a, b)
				}
			}
			if _, ok := signing.Signature(out, "domain", specKeyID); !ok {
				t.Errorf("existing signature of domain lost: %s", out)
			}
			redacted := Redact(v, out)
			if err := signing.Verify(redacted, "other", "ed25519:o", pub(seededKey(6))); err != nil {
				t.Errorf("new signature does not verify on the redacted form: %v", err)
			}
			if err := signing.Verify(out, "other", "ed25519:o", pub(seededKey(6))); err == nil {
				t.Errorf("new signature verifies on the full message event; it must cover the redacted form")
			}
		})
	}
	if _, err := SignEvent(MustVersion("12"), cjson.Arr(), "domain", specKeyID, specKey(t)); err == nil {
		t.Errorf("SignEvent of an array succeeded")
	}
}

func TestSignatureErrorMessage(t *testing.T) {
	err := &SignatureError{Server: "example.org", Reason: "no ed25519 signature"}
	if got, want := err.Error(), "event signature check failed for example.org: no ed25519 signature"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
