package keys

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// uploadRequest is the body of POST /keys/upload. Key objects stay raw:
// they are stored as received.
type uploadRequest struct {
	DeviceKeys   json.RawMessage            `json:"device_keys"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
}

// deviceKeysShape is what /keys/upload checks of device_keys
// (definitions/device_keys.yaml: every field is required).
type deviceKeysShape struct {
	UserID     *string                      `json:"user_id"`
	DeviceID   *string                      `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// oneKey is a parsed one-time or fallback key.
type oneKey struct {
	algorithm, keyID string
	raw              []byte
}

// handleUpload is POST /keys/upload (Client-Server API, "Key management
// API").
func (k *Keys) handleUpload(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var req uploadRequest
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if req.DeviceKeys != nil {
		if err := checkDeviceKeys(req.DeviceKeys, s); err != nil {
			endpoint.Fail(w, err)
			return
		}
	}
	otks, err := parseOneKeys("one_time_keys", req.OneTimeKeys)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	fallbacks, err := parseOneKeys("fallback_keys", req.FallbackKeys)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	seen := map[string]bool{}
	for _, fk := range fallbacks {
		if seen[fk.algorithm] {
			endpoint.Fail(w, mxerr.InvalidParam("fallback_keys: at most one key per algorithm"))
			return
		}
		seen[fk.algorithm] = true
	}

	var counts map[string]int
	changed := false
	err = k.db.Update(r.Context(), func(tx *storage.Tx) error {
		var err error
		if req.DeviceKeys != nil {
			if changed, err = k.storeDeviceKeys(r.Context(), tx, s, req.DeviceKeys); err != nil {
				return err
			}
		}
		if err := storeOneTimeKeys(r.Context(), tx, s, otks); err != nil {
			return err
		}
		if err := storeFallbackKeys(r.Context(), tx, s, fallbacks); err != nil {
			return err
		}
		counts, err = otkCounts(r.Context(), tx, s.UserID, s.DeviceID)
		return err
	})
	k.counts.invalidate(s.UserID, s.DeviceID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if changed {
		k.wakeSharing(r.Context(), s.UserID)
		k.announceDevice(r.Context(), s.UserID, s.DeviceID, false)
	}
	writeJSON(w, map[string]any{"one_time_key_counts": counts})
}

// checkDeviceKeys validates device_keys: all required fields with their
// types, and the user and device of the session.
func checkDeviceKeys(raw json.RawMessage, s *endpoint.Session) error {
	if !isObject(raw) {
		return badJSON("device_keys must be an object")
	}
	if err := strict(raw, "device_keys"); err != nil {
		return err
	}
	var dk deviceKeysShape
	if err := endpoint.Unmarshal(raw, &dk); err != nil {
		return err
	}
	switch {
	case dk.UserID == nil:
		return badJSON("device_keys: missing user_id")
	case dk.DeviceID == nil:
		return badJSON("device_keys: missing device_id")
	case dk.Algorithms == nil:
		return badJSON("device_keys: missing algorithms")
	case dk.Keys == nil:
		return badJSON("device_keys: missing keys")
	case dk.Signatures == nil:
		return badJSON("device_keys: missing signatures")
	}
	// device_keys.yaml: user_id and device_id "Must match the user ID
	// [device ID] used when logging in."
	if *dk.UserID != s.UserID {
		return mxerr.InvalidParam("device_keys.user_id does not match the authenticated user")
	}
	if *dk.DeviceID != s.DeviceID {
		return mxerr.InvalidParam("device_keys.device_id does not match the authenticated device")
	}
	return nil
}

// strict refuses a signed object that is not valid canonical JSON input
// (duplicate keys, floats, invalid UTF-8): nobody could verify a
// signature over it, and duplicate keys would make what we serve
// ambiguous.
func strict(raw []byte, what string) error {
	if _, err := cjson.Parse(raw); err != nil {
		return badJSON("%s is not valid for signing: %v", what, err)
	}
	return nil
}

// parseOneKeys validates a one_time_keys or fallback_keys map: names
// "<algorithm>:<key_id>", values a string or a key object
// (definitions/one_time_keys.yaml).
func parseOneKeys(field string, m map[string]json.RawMessage) ([]oneKey, error) {
	out := make([]oneKey, 0, len(m))
	for _, name := range sortedKeys(m) {
		alg, id, ok := strings.Cut(name, ":")
		if !ok || alg == "" || id == "" {
			return nil, badJSON("%s: key names must be <algorithm>:<key_id>, got %q", field, name)
		}
		raw := bytes.TrimSpace(m[name])
		switch {
		case len(raw) > 0 && raw[0] == '"':
		case isObject(raw):
			var ko struct {
				Key        *string                    `json:"key"`
				Signatures map[string]json.RawMessage `json:"signatures"`
			}
			if err := endpoint.Unmarshal(raw, &ko); err != nil {
				return nil, err
			}
			if ko.Key == nil || ko.Signatures == nil {
				return nil, badJSON("%s: %s: a key object needs key and signatures", field, name)
			}
			if err := strict(raw, field+"."+name); err != nil {
				return nil, err
			}
		default:
			return nil, badJSON("%s: %s must be a string or an object", field, name)
		}
		out = append(out, oneKey{algorithm: alg, keyID: id, raw: raw})
	}
	return out, nil
}

// storeDeviceKeys stores the device's identity keys and reports whether
// anything changed. Identity keys, once uploaded, cannot change: clients
// pin them, matrix-sdk-crypto ignores a changed Ed25519 key, and Synapse
// refuses the change (element-hq/synapse#18511). New signatures over the
// same keys are accepted.
func (k *Keys) storeDeviceKeys(ctx context.Context, tx *storage.Tx, s *endpoint.Session, raw []byte) (bool, error) {
	var old []byte
	err := tx.QueryRow(ctx, `SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?`,
		s.UserID, s.DeviceID).Scan(&old)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		old = nil
	case err != nil:
		return false, fmt.Errorf("keys: read device keys: %w", err)
	case bytes.Equal(old, raw):
		return false, nil
	default:
		var o, n struct {
			Keys map[string]string `json:"keys"`
		}
		if json.Unmarshal(old, &o) != nil || json.Unmarshal(raw, &n) != nil || !maps.Equal(o.Keys, n.Keys) {
			return false, mxerr.InvalidParam("The identity keys of this device are already uploaded and cannot change; log in as a new device instead")
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO e2e_device_keys (user_id, device_id, key_json, updated_ts) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json, updated_ts = excluded.updated_ts`,
		s.UserID, s.DeviceID, raw, k.now().UnixMilli()); err != nil {
		return false, fmt.Errorf("keys: store device keys: %w", err)
	}
	return true, recordChange(ctx, tx, s.UserID, "")
}

// storeOneTimeKeys adds one-time keys. Uploading a key ID again with the
// same key is a no-op (a retried request); with a different key it is an
// error, as in Synapse, since claimers may already hold the old one.
func storeOneTimeKeys(ctx context.Context, tx *storage.Tx, s *endpoint.Session, otks []oneKey) error {
	if len(otks) == 0 {
		return nil
	}
	var seq int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?`,
		s.UserID, s.DeviceID).Scan(&seq); err != nil {
		return fmt.Errorf("keys: one-time key order: %w", err)
	}
	for _, ok := range otks {
		var old []byte
		err := tx.QueryRow(ctx, `SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?`,
			s.UserID, s.DeviceID, ok.algorithm, ok.keyID).Scan(&old)
		if err == nil {
			if !sameKey(old, ok.raw) {
				return mxerr.InvalidParam(fmt.Sprintf("One-time key %s:%s already exists with a different value", ok.algorithm, ok.keyID))
			}
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keys: read one-time key: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, seq, key_json)
			VALUES (?, ?, ?, ?, ?, ?)`, s.UserID, s.DeviceID, ok.algorithm, ok.keyID, seq, ok.raw); err != nil {
			return fmt.Errorf("keys: store one-time key: %w", err)
		}
	}
	return nil
}

// sameKey reports whether two uploads of a key carry the same key,
// signatures aside.
func sameKey(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	sa, errA := stripped(a)
	sb, errB := stripped(b)
	if errA != nil || errB != nil {
		return false
	}
	return bytes.Equal(sa, sb)
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ca, errA := cjson.Canonicalize(a)
	cb, errB := cjson.Canonicalize(b)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
}

// storeFallbackKeys replaces the device's fallback key per algorithm
// (one_time_keys.yaml, fallback_keys: "the server will only persist one
// key per algorithm"). Re-uploading the current key keeps its used flag.
func storeFallbackKeys(ctx context.Context, tx *storage.Tx, s *endpoint.Session, fks []oneKey) error {
	for _, fk := range fks {
		var oldID string
		var old []byte
		err := tx.QueryRow(ctx, `SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?`,
			s.UserID, s.DeviceID, fk.algorithm).Scan(&oldID, &old)
		if err == nil && oldID == fk.keyID && sameKey(old, fk.raw) {
			continue
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("keys: read fallback key: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
			VALUES (?, ?, ?, ?, ?, FALSE)
			ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
			SET key_id = excluded.key_id, key_json = excluded.key_json, used = FALSE`,
			s.UserID, s.DeviceID, fk.algorithm, fk.keyID, fk.raw); err != nil {
			return fmt.Errorf("keys: store fallback key: %w", err)
		}
	}
	return nil
}
