package keys

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// crossSigningKeyShape is what we check of a cross-signing key
// (definitions/cross_signing_key.yaml).
type crossSigningKeyShape struct {
	UserID     *string                      `json:"user_id"`
	Usage      []string                     `json:"usage"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// newCrossKey is a validated cross-signing key from a request.
type newCrossKey struct {
	typ string
	id  string // unpadded base64 public key
	pub ed25519.PublicKey
	raw []byte
}

// handleDeviceSigningUpload is POST /keys/device_signing/upload
// (Client-Server API, "Cross-signing"). Keys may be uploaded freely the
// first time, and re-uploaded unchanged; replacing existing keys needs
// user-interactive authentication (m.login.password).
func (k *Keys) handleDeviceSigningUpload(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var req struct {
		Master      json.RawMessage `json:"master_key"`
		SelfSigning json.RawMessage `json:"self_signing_key"`
		UserSigning json.RawMessage `json:"user_signing_key"`
		Auth        json.RawMessage `json:"auth"`
	}
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	ctx := r.Context()
	var existing map[string]crossKey
	if err := k.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		existing, err = crossSigningKeys(ctx, tx, s.UserID)
		return err
	}); err != nil {
		endpoint.Fail(w, err)
		return
	}
	var keys []newCrossKey
	for _, in := range []struct {
		typ string
		raw json.RawMessage
	}{{typeMaster, req.Master}, {typeSelfSigning, req.SelfSigning}, {typeUserSigning, req.UserSigning}} {
		if in.raw == nil {
			continue
		}
		nk, err := parseCrossKey(in.raw, in.typ, s.UserID)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		keys = append(keys, nk)
	}
	if len(keys) == 0 {
		// Nothing to store: Synapse answers {} as well.
		writeJSON(w, struct{}{})
		return
	}

	// cross_signing.yaml: no UIA when there is no master key yet, or when
	// every key in the request matches the stored one.
	different := false
	for _, nk := range keys {
		if old, ok := existing[nk.typ]; !ok || !sameJSON(old.raw, nk.raw) {
			different = true
		}
	}
	if !different {
		writeJSON(w, struct{}{})
		return
	}
	if _, ok := existing[typeMaster]; ok {
		if err := k.checkUIA(ctx, s, req.Auth); err != nil {
			writeUIAError(w, err)
			return
		}
	}

	// The self-signing and user-signing keys must be signed by the
	// accompanying master key, or else the stored one.
	var master *newCrossKey
	for i := range keys {
		if keys[i].typ == typeMaster {
			master = &keys[i]
		}
	}
	if master == nil {
		if old, ok := existing[typeMaster]; ok {
			nk, err := parseCrossKey(old.raw, typeMaster, s.UserID)
			if err != nil {
				endpoint.Fail(w, err)
				return
			}
			master = &nk
		}
	}
	for _, nk := range keys {
		if nk.typ == typeMaster {
			continue
		}
		if master == nil {
			endpoint.Fail(w, mxerr.MissingParam("No master key available to verify the "+strings.ReplaceAll(nk.typ, "_", "-")+" key"))
			return
		}
		if err := verifySignedBy(nk.raw, s.UserID, master.id, master.pub); err != nil {
			endpoint.Fail(w, err)
			return
		}
	}

	// cross_signing.yaml, 403: "The public key of one of the keys is the
	// same as one of the user's device IDs": signatures name both by ID.
	devices, err := k.deviceIDs(ctx, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	for _, nk := range keys {
		if devices[nk.id] {
			endpoint.Fail(w, mxerr.Forbidden("Key ID in use"))
			return
		}
	}

	err = k.db.Update(ctx, func(tx *storage.Tx) error {
		for _, nk := range keys {
			if _, err := tx.Exec(ctx, `INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_id, key_json, updated_ts)
				VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (user_id, key_type) DO UPDATE
				SET key_id = excluded.key_id, key_json = excluded.key_json, updated_ts = excluded.updated_ts`,
				s.UserID, nk.typ, nk.id, nk.raw, k.now().UnixMilli()); err != nil {
				return fmt.Errorf("keys: store cross-signing key: %w", err)
			}
		}
		return recordChange(ctx, tx, s.UserID, "")
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	k.wakeSharing(ctx, s.UserID)
	k.announceSigningKeys(ctx, s.UserID)
	writeJSON(w, struct{}{})
}

// parseCrossKey validates a cross-signing key of type typ for userID.
func parseCrossKey(raw []byte, typ, userID string) (newCrossKey, error) {
	if !isObject(raw) {
		return newCrossKey{}, badJSON("%s_key must be an object", typ)
	}
	if err := strict(raw, typ+"_key"); err != nil {
		return newCrossKey{}, err
	}
	var ks crossSigningKeyShape
	if err := endpoint.Unmarshal(raw, &ks); err != nil {
		return newCrossKey{}, err
	}
	if ks.UserID == nil || ks.Usage == nil || ks.Keys == nil {
		return newCrossKey{}, badJSON("A cross-signing key needs user_id, usage and keys")
	}
	if *ks.UserID != userID {
		return newCrossKey{}, mxerr.InvalidParam("The cross-signing key's user_id does not match the authenticated user")
	}
	if !slices.Contains(ks.Usage, typ) {
		return newCrossKey{}, mxerr.InvalidParam("Invalid usage: expected " + typ)
	}
	// cross_signing_key.yaml: keys "must have exactly one property, whose
	// name is in the form <algorithm>:<unpadded_base64_public_key>, and
	// whose value is the unpadded base64 public key".
	if len(ks.Keys) != 1 {
		return newCrossKey{}, mxerr.InvalidParam("A cross-signing key must have exactly one key")
	}
	var name, val string
	for n, v := range ks.Keys {
		name, val = n, v
	}
	alg, id, _ := strings.Cut(name, ":")
	pub, err := signing.DecodeBase64(val)
	if alg != signing.AlgEd25519 || id != val || err != nil || len(pub) != ed25519.PublicKeySize {
		return newCrossKey{}, mxerr.InvalidParam("Invalid cross-signing key " + name)
	}
	return newCrossKey{typ: typ, id: id, pub: pub, raw: raw}, nil
}

// verifySignedBy checks signer's signature with the ed25519 key keyID
// (unpadded base64 public key pub) on obj.
func verifySignedBy(obj []byte, signer, keyID string, pub ed25519.PublicKey) error {
	err := signing.VerifyJSON(obj, signer, signing.AlgEd25519+":"+keyID, pub)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, signing.ErrBadSignature), errors.Is(err, signing.ErrNoSignature):
		return mxerr.New(http.StatusBadRequest, CodeInvalidSignature, "Invalid signature")
	default:
		return badJSON("Key object is not valid canonical JSON")
	}
}

// deviceIDs returns the user's device IDs: the accounts' list, or else
// the devices with keys.
func (k *Keys) deviceIDs(ctx context.Context, userID string) (map[string]bool, error) {
	set, err := k.knownDevices(ctx, userID)
	if err != nil || set != nil {
		return set, err
	}
	set = map[string]bool{}
	err = k.db.View(ctx, func(tx *storage.Tx) error {
		keys, err := deviceKeys(ctx, tx, userID, nil)
		for id := range keys {
			set[id] = true
		}
		return err
	})
	return set, err
}

// uiaError is a user-interactive authentication answer: a 401 with the
// flows, with errcode and error when an attempt failed (Client-Server API,
// "User-interactive API in the REST API").
type uiaError struct {
	session string
	failed  *mxerr.MatrixError // nil for a plain challenge
}

func (e *uiaError) Error() string { return "keys: user-interactive authentication required" }

func writeUIAError(w http.ResponseWriter, err error) {
	var ue *uiaError
	if !errors.As(err, &ue) {
		endpoint.Fail(w, err)
		return
	}
	body := map[string]any{
		"flows":   []map[string][]string{{"stages": {"m.login.password"}}},
		"params":  map[string]any{},
		"session": ue.session,
	}
	if ue.failed != nil {
		body["errcode"], body["error"] = ue.failed.Code, ue.failed.Msg
	}
	b, jerr := json.Marshal(body)
	if jerr != nil {
		endpoint.Fail(w, jerr)
		return
	}
	server.WriteRawJSON(w, http.StatusUnauthorized, b)
}

// checkUIA runs the one-stage m.login.password flow. The stage is
// complete in one request, so no server-side session state is needed:
// the session ID is echoed for clients that expect one.
func (k *Keys) checkUIA(ctx context.Context, s *endpoint.Session, raw json.RawMessage) error {
	var auth struct {
		Type       string `json:"type"`
		Session    string `json:"session"`
		Password   string `json:"password"`
		User       string `json:"user"` // deprecated form, still sent by older clients
		Identifier struct {
			Type string `json:"type"`
			User string `json:"user"`
		} `json:"identifier"`
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := endpoint.Unmarshal(raw, &auth); err != nil {
			return err
		}
	}
	session := auth.Session
	if session == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		session = hex.EncodeToString(b[:])
	}
	switch auth.Type {
	case "":
		return &uiaError{session: session}
	case "m.login.password":
	default:
		return &uiaError{session: session, failed: mxerr.Forbidden("Unsupported authentication type " + auth.Type)}
	}
	user := auth.Identifier.User
	if user == "" {
		user = auth.User
	}
	if auth.Identifier.Type != "" && auth.Identifier.Type != "m.id.user" {
		return &uiaError{session: session, failed: mxerr.Forbidden("Only m.id.user identifiers are supported")}
	}
	if user != "" && !strings.HasPrefix(user, "@") {
		user = "@" + user + ":" + k.cfg.ServerName
	}
	if user != "" && user != s.UserID {
		// Synapse: authenticating as someone else is 403, not a retry.
		return mxerr.Forbidden("Requested user ID does not match the logged-in user")
	}
	if k.deps.CheckPassword == nil {
		return &uiaError{session: session, failed: mxerr.Forbidden("Invalid password")}
	}
	if err := k.deps.CheckPassword(ctx, s.UserID, auth.Password); err != nil {
		var me *mxerr.MatrixError
		if !errors.As(err, &me) {
			k.log.Warn("keys: checking password", "user", s.UserID, "err", err)
		}
		return &uiaError{session: session, failed: mxerr.Forbidden("Invalid password")}
	}
	return nil
}
