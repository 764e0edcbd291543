package signing

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// Base64 is unpadded standard base64 (appendices, "Unpadded Base64").
// Decoding also accepts padded input, which the spec says implementations
// SHOULD accept.
var Base64 = base64.RawStdEncoding

// DecodeBase64 decodes unpadded or padded standard base64.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	return Base64.DecodeString(s)
}

// URLBase64 is unpadded URL-safe base64, used for event IDs from room
// version 4 on.
var URLBase64 = base64.RawURLEncoding

// Errors a verifier may branch on.
var (
	ErrNoSignature  = errors.New("signing: no signature from that entity and key")
	ErrBadSignature = errors.New("signing: signature does not verify")
)

// Algorithm of every key we know.
const AlgEd25519 = "ed25519"

// SigningBytes returns the bytes that are signed: the canonical encoding of
// obj without "signatures" and "unsigned".
func SigningBytes(obj cjson.Value) ([]byte, error) {
	if obj.Kind() != cjson.Object {
		return nil, fmt.Errorf("signing: can only sign a JSON object, not %s", obj.Kind())
	}
	return cjson.Marshal(obj.Without("signatures", "unsigned")), nil
}

// Sign adds entity's signature with keyID (e.g. "ed25519:a_AbCd") to obj and
// returns the result; other signatures are kept.
func Sign(obj cjson.Value, entity, keyID string, priv ed25519.PrivateKey) (cjson.Value, error) {
	msg, err := SigningBytes(obj)
	if err != nil {
		return cjson.Value{}, err
	}
	sig := Base64.EncodeToString(ed25519.Sign(priv, msg))
	sigs, _ := obj.Get("signatures")
	if sigs.Kind() != cjson.Object {
		sigs = cjson.Obj()
	}
	mine, _ := sigs.Get(entity)
	if mine.Kind() != cjson.Object {
		mine = cjson.Obj()
	}
	mine = mine.With(keyID, cjson.Str(sig))
	return obj.With("signatures", sigs.With(entity, mine)), nil
}

// SignJSON is Sign on bytes.
func SignJSON(obj []byte, entity, keyID string, priv ed25519.PrivateKey) ([]byte, error) {
	v, err := cjson.Parse(obj)
	if err != nil {
		return nil, err
	}
	signed, err := Sign(v, entity, keyID, priv)
	if err != nil {
		return nil, err
	}
	return cjson.Marshal(signed), nil
}

// Signature returns the base64 signature of entity with keyID, if present.
func Signature(obj cjson.Value, entity, keyID string) (string, bool) {
	s, ok := obj.Path("signatures", entity, keyID)
	if !ok {
		return "", false
	}
	return s.Str()
}

// KeyIDs lists entity's signing key IDs on obj whose algorithm we
// understand (step 2 of "Checking for a Signature").
func KeyIDs(obj cjson.Value, entity string) []string {
	sigs, ok := obj.Path("signatures", entity)
	if !ok {
		return nil
	}
	var ids []string
	for _, m := range sigs.Members() {
		if strings.HasPrefix(m.Key, AlgEd25519+":") {
			ids = append(ids, m.Key)
		}
	}
	return ids
}

// Verify checks entity's signature with keyID on obj against pub.
func Verify(obj cjson.Value, entity, keyID string, pub ed25519.PublicKey) error {
	sig, ok := Signature(obj, entity, keyID)
	if !ok {
		return fmt.Errorf("%w: %s %s", ErrNoSignature, entity, keyID)
	}
	raw, err := DecodeBase64(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: malformed signature from %s %s", ErrBadSignature, entity, keyID)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("signing: bad public key length %d", len(pub))
	}
	msg, err := SigningBytes(obj)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, raw) {
		return fmt.Errorf("%w: %s %s", ErrBadSignature, entity, keyID)
	}
	return nil
}

// VerifyJSON is Verify on bytes.
func VerifyJSON(obj []byte, entity, keyID string, pub ed25519.PublicKey) error {
	v, err := cjson.Parse(obj)
	if err != nil {
		return err
	}
	return Verify(v, entity, keyID, pub)
}
