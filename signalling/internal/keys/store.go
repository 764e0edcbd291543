package keys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/internal/storage"
)

// Cross-signing key types, as in the "usage" of a cross-signing key and
// in e2e_cross_signing_keys.key_type.
const (
	typeMaster      = "master"
	typeSelfSigning = "self_signing"
	typeUserSigning = "user_signing"
)

// recordChange appends to the device list stream: owner's device list
// or cross-signing keys changed. viewer "" concerns everyone sharing a
// room with owner; otherwise only viewer.
func recordChange(ctx context.Context, tx *storage.Tx, owner, viewer string) error {
	_, err := tx.Exec(ctx, `INSERT INTO e2e_device_list_changes (pos, user_id, viewer) VALUES (?, ?, ?)`,
		tx.NextPos(), owner, viewer)
	if err != nil {
		return fmt.Errorf("keys: record device list change: %w", err)
	}
	return nil
}

// deviceKeys returns the stored device key objects of userID: all of them
// when devices is empty, else those named.
func deviceKeys(ctx context.Context, tx *storage.Tx, userID string, devices []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(devices) == 0 {
		rows, err := tx.Query(ctx, `SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = ?`, userID)
		if err != nil {
			return nil, fmt.Errorf("keys: read device keys: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var raw []byte
			if err := rows.Scan(&id, &raw); err != nil {
				return nil, fmt.Errorf("keys: read device keys: %w", err)
			}
			out[id] = raw
		}
		return out, rows.Err()
	}
	for _, d := range devices {
		var raw []byte
		err := tx.QueryRow(ctx, `SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?`, userID, d).Scan(&raw)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keys: read device keys: %w", err)
		}
		out[d] = raw
	}
	return out, nil
}

// displayNames returns the display names of userID's devices from the
// accounts tables (Client-Server API, "Device management"), for the
// unsigned device_display_name of /keys/query.
func displayNames(ctx context.Context, tx *storage.Tx, userID string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT device_id, display_name FROM devices WHERE user_id = ? AND display_name IS NOT NULL`, userID)
	if err != nil {
		return nil, fmt.Errorf("keys: read device names: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("keys: read device names: %w", err)
		}
		out[id] = name
	}
	return out, rows.Err()
}

// crossKey is a stored cross-signing key.
type crossKey struct {
	id  string // unpadded base64 public key
	raw []byte
}

// crossSigningKeys returns userID's cross-signing keys by type.
func crossSigningKeys(ctx context.Context, tx *storage.Tx, userID string) (map[string]crossKey, error) {
	rows, err := tx.Query(ctx, `SELECT key_type, key_id, key_json FROM e2e_cross_signing_keys WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("keys: read cross-signing keys: %w", err)
	}
	defer rows.Close()
	out := map[string]crossKey{}
	for rows.Next() {
		var typ string
		var ck crossKey
		if err := rows.Scan(&typ, &ck.id, &ck.raw); err != nil {
			return nil, fmt.Errorf("keys: read cross-signing keys: %w", err)
		}
		out[typ] = ck
	}
	return out, rows.Err()
}

// signaturesOn returns the stored signatures on target's keys that viewer
// may see, by target key ID: those made by target itself and those made
// by viewer (Client-Server API, "Cross-signing": a user-signing key's
// signatures are only visible to its owner).
func signaturesOn(ctx context.Context, tx *storage.Tx, target, viewer string) (map[string]sigMap, error) {
	rows, err := tx.Query(ctx, `SELECT target_key_id, signer_id, signer_key_id, signature FROM e2e_signatures
		WHERE target_user_id = ? AND (signer_id = ? OR signer_id = ?)`, target, target, viewer)
	if err != nil {
		return nil, fmt.Errorf("keys: read signatures: %w", err)
	}
	defer rows.Close()
	out := map[string]sigMap{}
	for rows.Next() {
		var keyID, signer, signerKey, sig string
		if err := rows.Scan(&keyID, &signer, &signerKey, &sig); err != nil {
			return nil, fmt.Errorf("keys: read signatures: %w", err)
		}
		if out[keyID] == nil {
			out[keyID] = sigMap{}
		}
		out[keyID].add(signer, signerKey, sig)
	}
	return out, rows.Err()
}

// OneTimeKeyCounts returns the number of unclaimed one-time keys of the
// device per algorithm, for /sync's device_one_time_keys_count.
// signed_curve25519 is always present, as Synapse does, so that clients
// see 0 rather than nothing once the keys run out.
func (k *Keys) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	e, err := k.counts.get(ctx, deviceRef{userID, deviceID}, func(ctx context.Context) (countsEntry, error) {
		return k.loadCounts(ctx, userID, deviceID)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(e.otk))
	for alg, n := range e.otk {
		out[alg] = n
	}
	return out, nil
}

// loadCounts reads a device's one-time key counts and unused fallback key
// types in one snapshot.
func (k *Keys) loadCounts(ctx context.Context, userID, deviceID string) (countsEntry, error) {
	var e countsEntry
	err := k.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		if e.otk, err = otkCounts(ctx, tx, userID, deviceID); err != nil {
			return err
		}
		e.fallback, err = unusedFallbacks(ctx, tx, userID, deviceID)
		return err
	})
	return e, err
}

func otkCounts(ctx context.Context, tx *storage.Tx, userID, deviceID string) (map[string]int, error) {
	rows, err := tx.Query(ctx, `SELECT algorithm, COUNT(*) FROM e2e_one_time_keys
		WHERE user_id = ? AND device_id = ? GROUP BY algorithm`, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("keys: count one-time keys: %w", err)
	}
	defer rows.Close()
	out := map[string]int{"signed_curve25519": 0}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, fmt.Errorf("keys: count one-time keys: %w", err)
		}
		out[alg] = n
	}
	return out, rows.Err()
}

// UnusedFallbackKeyTypes returns the algorithms for which the device has
// a fallback key that no /keys/claim has handed out yet, for /sync's
// device_unused_fallback_key_types. It is never nil.
func (k *Keys) UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error) {
	e, err := k.counts.get(ctx, deviceRef{userID, deviceID}, func(ctx context.Context) (countsEntry, error) {
		return k.loadCounts(ctx, userID, deviceID)
	})
	if err != nil {
		return nil, err
	}
	return append([]string{}, e.fallback...), nil
}

func unusedFallbacks(ctx context.Context, tx *storage.Tx, userID, deviceID string) ([]string, error) {
	out, err := tx.Strings(ctx, `SELECT algorithm FROM e2e_fallback_keys
		WHERE user_id = ? AND device_id = ? AND used = FALSE ORDER BY algorithm`, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("keys: read fallback keys: %w", err)
	}
	return out, nil
}

// DeleteDevice removes everything this package holds for a device (its
// keys, one-time and fallback keys, signatures on it, pending to-device
// messages and transaction IDs) and records a device list change, so that
// users sharing a room with its owner stop encrypting for it. The
// accounts package calls it when a device is deleted.
func (k *Keys) DeleteDevice(ctx context.Context, userID, deviceID string) error {
	err := k.db.Update(ctx, func(tx *storage.Tx) error {
		for _, q := range []string{
			`DELETE FROM e2e_device_keys WHERE user_id = ? AND device_id = ?`,
			`DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?`,
			`DELETE FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?`,
			`DELETE FROM e2e_signatures WHERE target_user_id = ? AND target_key_id = ?`,
			`DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ?`,
			`DELETE FROM to_device_txns WHERE user_id = ? AND device_id = ?`,
		} {
			if _, err := tx.Exec(ctx, q, userID, deviceID); err != nil {
				return fmt.Errorf("keys: delete device: %w", err)
			}
		}
		return recordChange(ctx, tx, userID, "")
	})
	k.counts.invalidate(userID, deviceID)
	if err != nil {
		return err
	}
	k.wakeSharing(ctx, userID)
	k.announceDevice(ctx, userID, deviceID, true)
	return nil
}
