package auth

import (
	"crypto/ed25519"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// allowedThirdPartyInviteMember is rule 4.4.1 (v12: 5.4.1): an invite
// that claims an m.room.third_party_invite, proven by the identity
// server's signature over content.third_party_invite.signed
// (server-server API, "Verifying the invite").
func allowedThirdPartyInviteMember(e *pdu.Event, state StateGetter, tpi cjson.Value, target pdu.UserID) error {
	// 4.4.1.1
	if membershipOf(state, target) == "ban" {
		return deny(e, ruleInvite3PBanned, "target %s is banned", target)
	}
	// 4.4.1.2
	signed, ok := tpi.Get("signed")
	if !ok || signed.Kind() != cjson.Object {
		return deny(e, ruleInvite3PNoSigned, "third_party_invite has no signed object")
	}
	// 4.4.1.3
	mxid, okM := signed.GetStr("mxid")
	token, okT := signed.GetStr("token")
	if !okM || !okT {
		return deny(e, ruleInvite3PNoMXIDToken, "third_party_invite.signed lacks string mxid and token")
	}
	// 4.4.1.4
	if mxid != string(target) {
		return deny(e, ruleInvite3PMXIDMismatch, "signed mxid %s is not the state_key %s", mxid, target)
	}
	// 4.4.1.5
	invite := state(pdu.StateTuple{Type: pdu.TypeThirdPartyInvite, StateKey: token})
	if invite == nil {
		return deny(e, ruleInvite3PNoEvent, "no m.room.third_party_invite with token %q", token)
	}
	// 4.4.1.6
	if invite.Sender() != e.Sender() {
		return deny(e, ruleInvite3PSenderMismatch, "sender %s did not send the third-party invite (%s did)", e.Sender(), invite.Sender())
	}
	// 4.4.1.7
	if signedByInviteKey(signed, invite.Content()) {
		return nil
	}
	// 4.4.1.8
	return deny(e, ruleInvite3PBadSignature, "no signature in third_party_invite.signed matches a public key of the third-party invite")
}

// signedByInviteKey reports whether any signature in signed verifies with
// any public key of the m.room.third_party_invite content: public_key and
// the entries of public_keys (event schema m.room.third_party_invite).
// The signatures are of "Signing JSON" (appendices); the signing entity's
// name does not matter, the key does.
func signedByInviteKey(signed, inviteContent cjson.Value) bool {
	var keys []ed25519.PublicKey
	if s, ok := inviteContent.GetStr("public_key"); ok {
		if k, ok := decodePublicKey(s); ok {
			keys = append(keys, k)
		}
	}
	list, _ := inviteContent.Get("public_keys")
	for _, el := range list.Array() {
		if s, ok := el.GetStr("public_key"); ok {
			if k, ok := decodePublicKey(s); ok {
				keys = append(keys, k)
			}
		}
	}
	sigs, _ := signed.Get("signatures")
	for _, server := range sigs.Members() {
		for _, keyID := range signing.KeyIDs(signed, server.Key) {
			for _, k := range keys {
				if signing.Verify(signed, server.Key, keyID, k) == nil {
					return true
				}
			}
		}
	}
	return false
}

// decodePublicKey decodes an ed25519 public key in unpadded base64 of the
// standard or URL-safe alphabet (event schema m.room.third_party_invite).
func decodePublicKey(s string) (ed25519.PublicKey, bool) {
	b, err := signing.DecodeBase64(s)
	if err != nil {
		b, err = signing.URLBase64.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}
