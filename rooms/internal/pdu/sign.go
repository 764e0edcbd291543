package pdu

import (
	"crypto/ed25519"
	"errors"
	"fmt"

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
// form of the event with a key valid at the event's origin_server_ts. One
// good signature per server suffices.
func VerifySignatures(e *Event, keys KeyFinder) error {
	redacted := Redact(e.v, e.obj)
	for _, server := range RequiredSigners(e) {
		if err := verifyOne(e, redacted, server, keys); err != nil {
			return err
		}
	}
	return nil
}

func verifyOne(e *Event, redacted cjson.Value, server ServerName, keys KeyFinder) error {
	ids := signing.KeyIDs(redacted, string(server))
	if len(ids) == 0 {
		return &SignatureError{Server: server, Reason: "no ed25519 signature"}
	}
	var last error
	for _, id := range ids {
		k, ok := keys(server, id)
		if !ok {
			last = &SignatureError{Server: server, Reason: "unknown key " + id}
			continue
		}
		if k.ValidUntilTS < e.ts {
			last = &SignatureError{Server: server, Reason: fmt.Sprintf("key %s not valid at origin_server_ts %d", id, e.ts)}
			continue
		}
		if err := signing.Verify(redacted, string(server), id, k.Key); err != nil {
			if errors.Is(err, signing.ErrBadSignature) {
				last = &SignatureError{Server: server, Reason: "bad signature with " + id}
				continue
			}
			return err
		}
		return nil
	}
	return last
}

// SignEvent adds server's signature to an event object: the signature is
// over the redacted form (server-server API, "Signing events"), and is
// added to the full object.
func SignEvent(v *Version, obj cjson.Value, server ServerName, keyID string, priv ed25519.PrivateKey) (cjson.Value, error) {
	signedRedacted, err := signing.Sign(Redact(v, obj), string(server), keyID, priv)
	if err != nil {
		return cjson.Value{}, err
	}
	sigs, _ := signedRedacted.Get("signatures")
	return obj.With("signatures", sigs), nil
}
