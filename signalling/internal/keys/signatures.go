package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// newSignature is a verified signature to store.
type newSignature struct {
	targetUser, targetKey, signerKey, sig string
}

// sigFailure is one entry of the failures map of
// /keys/signatures/upload.
type sigFailure struct {
	Code string `json:"errcode"`
	Msg  string `json:"error"`
}

func invalidSig(msg string) *sigFailure { return &sigFailure{Code: CodeInvalidSignature, Msg: msg} }

// signerState is what checking one requester's signatures needs, read
// once per request.
type signerState struct {
	requester string
	cross     map[string]crossKey            // the requester's cross-signing keys
	devices   map[string][]byte              // the requester's device keys
	targets   map[string]map[string]crossKey // other users' cross-signing keys
}

// handleSignaturesUpload is POST /keys/signatures/upload (Client-Server
// API, "Cross-signing"). The requester may sign their own devices with
// their self-signing key, their own master key with their devices, and
// other users' master keys with their user-signing key. Each signed
// object must match the stored key; the requester's new signatures on it
// are verified and stored, and every object that fails is reported in
// failures rather than failing the request.
func (k *Keys) handleSignaturesUpload(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var req map[string]map[string]json.RawMessage
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	ctx := r.Context()
	st := &signerState{requester: s.UserID, targets: map[string]map[string]crossKey{}}
	err := k.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		if st.cross, err = crossSigningKeys(ctx, tx, s.UserID); err != nil {
			return err
		}
		if st.devices, err = deviceKeys(ctx, tx, s.UserID, nil); err != nil {
			return err
		}
		for user := range req {
			if user != s.UserID && k.isLocal(user) {
				if st.targets[user], err = crossSigningKeys(ctx, tx, user); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}

	failures := map[string]map[string]*sigFailure{}
	var sigs []newSignature
	for _, user := range sortedKeys(req) {
		for _, keyID := range sortedKeys(req[user]) {
			var got []newSignature
			var f *sigFailure
			if user == s.UserID {
				got, f = st.checkOwn(keyID, req[user][keyID])
			} else {
				got, f = st.checkOther(k.isLocal(user), user, keyID, req[user][keyID])
			}
			if f != nil {
				if failures[user] == nil {
					failures[user] = map[string]*sigFailure{}
				}
				failures[user][keyID] = f
				continue
			}
			sigs = append(sigs, got...)
		}
	}

	own, others := false, map[string]bool{}
	if len(sigs) > 0 {
		err = k.db.Update(ctx, func(tx *storage.Tx) error {
			for _, ns := range sigs {
				if _, err := tx.Exec(ctx, `INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_id, signer_key_id, signature)
					VALUES (?, ?, ?, ?, ?)
					ON CONFLICT (target_user_id, target_key_id, signer_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
					ns.targetUser, ns.targetKey, s.UserID, ns.signerKey, ns.sig); err != nil {
					return fmt.Errorf("keys: store signature: %w", err)
				}
				if ns.targetUser == s.UserID {
					own = true
				} else {
					others[ns.targetUser] = true
				}
			}
			if own {
				if err := recordChange(ctx, tx, s.UserID, ""); err != nil {
					return err
				}
			}
			// A user-signing signature changes only the signer's view of
			// the target (Synapse's user signature stream).
			for _, target := range sortedKeys(others) {
				if err := recordChange(ctx, tx, target, s.UserID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
	}
	if own {
		k.wakeSharing(ctx, s.UserID)
		k.announceSignatures(ctx, s.UserID, st.devices, sigs)
	} else if len(others) > 0 {
		k.hub.Wake(s.UserID)
	}
	writeJSON(w, map[string]any{"failures": failures})
}

// checkOwn checks a signed object of the requester's own: a device
// signed by the self-signing key, or the master key signed by devices.
func (st *signerState) checkOwn(keyID string, obj []byte) ([]newSignature, *sigFailure) {
	if master, ok := st.cross[typeMaster]; ok && keyID == master.id {
		return st.checkMasterByDevices(master, obj)
	}
	stored, ok := st.devices[keyID]
	if !ok {
		return nil, &sigFailure{Code: mxerr.CodeNotFound, Msg: "Unknown device"}
	}
	ssk, ok := st.cross[typeSelfSigning]
	if !ok {
		return nil, &sigFailure{Code: mxerr.CodeNotFound, Msg: "No self-signing key found"}
	}
	return st.checkSignedBy(st.requester, keyID, stored, obj, ssk)
}

// checkMasterByDevices checks the requester's devices' signatures on
// their own master key.
func (st *signerState) checkMasterByDevices(master crossKey, obj []byte) ([]newSignature, *sigFailure) {
	if f := matches(master.raw, obj); f != nil {
		return nil, f
	}
	var body struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if json.Unmarshal(obj, &body) != nil {
		return nil, &sigFailure{Code: mxerr.CodeBadJSON, Msg: "Invalid signatures"}
	}
	var out []newSignature
	for signerKey, sig := range body.Signatures[st.requester] {
		alg, dev, _ := strings.Cut(signerKey, ":")
		if dev == master.id {
			continue // the master key's own signature, part of the key
		}
		devKeys, ok := st.devices[dev]
		if alg != signing.AlgEd25519 || !ok {
			return nil, invalidSig("Signed by an unknown device")
		}
		var dk struct {
			Keys map[string]string `json:"keys"`
		}
		if json.Unmarshal(devKeys, &dk) != nil {
			return nil, invalidSig("Signing device has no usable key")
		}
		pub, err := signing.DecodeBase64(dk.Keys[signerKey])
		if err != nil || signing.VerifyJSON(obj, st.requester, signerKey, pub) != nil {
			return nil, invalidSig("Invalid signature")
		}
		out = append(out, newSignature{targetUser: st.requester, targetKey: master.id, signerKey: signerKey, sig: sig})
	}
	if len(out) == 0 {
		return nil, invalidSig("Missing signature")
	}
	return out, nil
}

// checkOther checks the requester's user-signing signature on another
// user's master key.
func (st *signerState) checkOther(local bool, user, keyID string, obj []byte) ([]newSignature, *sigFailure) {
	usk, ok := st.cross[typeUserSigning]
	if !ok {
		return nil, &sigFailure{Code: mxerr.CodeNotFound, Msg: "No user-signing key found"}
	}
	if !local {
		return nil, &sigFailure{Code: mxerr.CodeNotFound, Msg: "Keys of remote users cannot be signed yet"}
	}
	master, ok := st.targets[user][typeMaster]
	if !ok {
		return nil, &sigFailure{Code: mxerr.CodeNotFound, Msg: "No master key found for " + user}
	}
	if keyID != master.id {
		return nil, &sigFailure{Code: mxerr.CodeInvalidParam, Msg: "Only another user's master key can be signed"}
	}
	return st.checkSignedBy(user, keyID, master.raw, obj, usk)
}

// checkSignedBy checks that obj matches the stored key and carries a
// valid signature by the requester's cross-signing key signer.
func (st *signerState) checkSignedBy(targetUser, targetKey string, stored, obj []byte, signer crossKey) ([]newSignature, *sigFailure) {
	if f := matches(stored, obj); f != nil {
		return nil, f
	}
	signerKey := signing.AlgEd25519 + ":" + signer.id
	pub, err := signing.DecodeBase64(signer.id)
	if err != nil {
		return nil, invalidSig("Unusable signing key")
	}
	v, err := cjson.Parse(obj)
	if err != nil {
		return nil, &sigFailure{Code: mxerr.CodeBadJSON, Msg: "Signed object is not valid canonical JSON"}
	}
	sig, ok := signing.Signature(v, st.requester, signerKey)
	if !ok {
		return nil, invalidSig("Missing signature")
	}
	if signing.Verify(v, st.requester, signerKey, pub) != nil {
		return nil, invalidSig("Invalid signature")
	}
	return []newSignature{{targetUser: targetUser, targetKey: targetKey, signerKey: signerKey, sig: sig}}, nil
}

// matches reports, as a failure, a signed object that is not the stored
// key: cross_signing.yaml, "The signed JSON object must match the key
// previously uploaded or retrieved for the given key ID, with the
// exception of the signatures property".
func matches(stored, obj []byte) *sigFailure {
	a, errA := stripped(stored)
	b, errB := stripped(obj)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		return invalidSig("Key does not match")
	}
	return nil
}
