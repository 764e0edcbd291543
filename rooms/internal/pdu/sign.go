package pdu

import (
	"crypto/ed25519"
	"fmt"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
)

// VerifyKey is a server's public key as known to us, with its validity.
type VerifyKey struct {
	Key ed25519.PublicKey
	// ValidUntilTS is the time (ms) up to which signatures made by the key
	// are acceptable: for a current key, the lesser of its valid_until_ts
	// and 7 days after we fetched it; for an old key, its expired_ts
	// (rooms v5+, "Signing key validity period").
	ValidUntilTS int64
}

// KeyFinder looks up a verify key; ok is false when the key is unknown.
// Fetching happens elsewhere (federation); this package stays pure.
type KeyFinder func(server ServerName, keyID string) (key VerifyKey, ok bool)

// SignatureError says which server's signature on an event is missing or
// bad. Such an event is dropped (server-server API, "Checks performed on
// receipt of a PDU", step 2).
type SignatureError struct {
	Server ServerName
	Reason string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("event signature check failed for %s: %s", e.Server, e.Reason)
}

// RequiredSigners lists the servers that must have signed e
// (server-server API, "Validating hashes and signatures on received
// events"): the sender's server, and for a restricted join the server of
// the user named in join_authorised_via_users_server.
func RequiredSigners(e *Event) []ServerName {
	servers := []ServerName{e.sender.Domain()}
	if e.typ == TypeMember && e.Membership() == "join" {
		if via, ok := e.content.GetStr("join_authorised_via_users_server"); ok {
			if u, err := ParseUserID(via); err == nil && u.Domain() != servers[0] {
				servers = append(servers, u.Domain())
			}
		}
	}
	return servers
}

// VerifySignatures checks that every required server signed the redacted
// form of the event with a key valid at the event's origin_server_ts
// (server-server API, "Validating hashes and signatures on received
// events"): signatures from unknown keys, or keys that expired before
// origin_server_ts, are skipped; every other signature of the server must
// verify, and at least one must remain.
func VerifySignatures(e *Event, keys KeyFinder) error {
	redacted := Redact(e.v, e.obj)
	for _, server := range RequiredSigners(e) {
		if err := verifyOne(e, redacted, server, keys); err != nil {
			return err
		}
	}
	return nil
}

// VerifyServerSignature checks one server's signature on e as
// VerifySignatures checks each required server's: for countersigning, where
// the server about to sign is itself one of the required signers.
func VerifyServerSignature(e *Event, server ServerName, keys KeyFinder) error {
	return verifyOne(e, Redact(e.v, e.obj), server, keys)
}

func verifyOne(e *Event, redacted cjson.Value, server ServerName, keys KeyFinder) error {
	ids := signing.KeyIDs(redacted, string(server))
	if len(ids) == 0 {
		return &SignatureError{Server: server, Reason: "no ed25519 signature"}
	}
	var skipped []string
	verified := 0
	for _, id := range ids {
		k, ok := keys(server, id)
		if !ok {
			skipped = append(skipped, "unknown key "+id)
			continue
		}
		if k.ValidUntilTS < e.ts {
			// Rooms v5+, "Signing key validity period": valid_until_ts
			// must be at least origin_server_ts.
			skipped = append(skipped, fmt.Sprintf("key %s not valid at origin_server_ts %d", id, e.ts))
			continue
		}
		// Any failure here, a malformed entry as much as a wrong
		// signature, is a bad signature from a key we trust: the event
		// fails rather than falling back on another key.
		if err := signing.Verify(redacted, string(server), id, k.Key); err != nil {
			return &SignatureError{Server: server, Reason: fmt.Sprintf("bad signature with %s: %v", id, err)}
		}
		verified++
	}
	if verified == 0 {
		return &SignatureError{Server: server, Reason: strings.Join(skipped, "; ")}
	}
	return nil
}

// SignEvent adds server's signature to an event object: the signature is
// over the redacted form (server-server API, "Signing events"), and is
// added to the full object.
func SignEvent(v *Version, obj cjson.Value, server ServerName, keyID string, priv ed25519.PrivateKey) (cjson.Value, error) {
	// Redact turns anything into an object, so check here: signing a
	// non-object would otherwise return a made-up event.
	if obj.Kind() != cjson.Object {
		return cjson.Value{}, fmt.Errorf("pdu: can only sign an event object, not %s", obj.Kind())
	}
	signedRedacted, err := signing.Sign(Redact(v, obj), string(server), keyID, priv)
	if err != nil {
		return cjson.Value{}, err
	}
	sigs, _ := signedRedacted.Get("signatures")
	return obj.With("signatures", sigs), nil
}
