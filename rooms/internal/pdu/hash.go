package pdu

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
)

// ContentHash computes the content hash of an event object: SHA-256 of the
// canonical JSON without "unsigned", "signatures" and "hashes"
// (server-server API, "Calculating the content hash for an event").
func ContentHash(obj cjson.Value) [32]byte {
	return sha256.Sum256(cjson.Marshal(obj.Without("unsigned", "signatures", "hashes")))
}

// ReferenceHash computes the reference hash: SHA-256 of the canonical JSON
// of the redacted event without "signatures" and "unsigned"
// (server-server API, "Calculating the reference hash for an event").
func ReferenceHash(v *Version, obj cjson.Value) [32]byte {
	r := Redact(v, obj).Without("signatures", "unsigned")
	return sha256.Sum256(cjson.Marshal(r))
}

func referenceHashB64(v *Version, obj cjson.Value) string {
	h := ReferenceHash(v, obj)
	return signing.URLBase64.EncodeToString(h[:])
}

// CheckContentHash reports whether hashes.sha256 matches the content. A
// mismatch means the event must be redacted before use (server-server API,
// "Checks performed on receipt of a PDU", step 3).
func (e *Event) CheckContentHash() bool {
	s, ok := e.obj.Path("hashes", "sha256")
	if !ok {
		return false
	}
	str, _ := s.Str()
	want, err := signing.DecodeBase64(str)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := ContentHash(e.obj)
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
