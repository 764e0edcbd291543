package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// handleClaim is POST /keys/claim (Client-Server API, "Key management
// API"): one key per requested device and algorithm, a one-time key in
// upload order if any is left, else the device's fallback key.
func (k *Keys) handleClaim(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
		Timeout     *int64                       `json:"timeout"`
	}
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	claimed := map[string]map[string][]byte{} // user -> device -> {"alg:id": key}
	failures := map[string]json.RawMessage{}
	err := k.db.Update(r.Context(), func(tx *storage.Tx) error {
		for user, devices := range req.OneTimeKeys {
			if !k.isLocal(user) {
				if srv := serverOf(user); srv != "" {
					failures[srv] = remoteFailure
				}
				continue
			}
			for device, alg := range devices {
				keyID, raw, err := claimOne(r.Context(), tx, user, device, alg)
				if err != nil {
					return err
				}
				if raw == nil {
					continue
				}
				if claimed[user] == nil {
					claimed[user] = map[string][]byte{}
				}
				claimed[user][device] = rawObject(map[string][]byte{alg + ":" + keyID: raw})
			}
		}
		return nil
	})
	for user, devices := range req.OneTimeKeys {
		for device := range devices {
			k.counts.invalidate(user, device)
		}
	}
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	remote, answered, remoteFailures, err := k.claimRemote(r.Context(), req.OneTimeKeys, remoteTimeout(req.Timeout))
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	for _, srv := range answered {
		delete(failures, srv)
	}
	for srv, f := range remoteFailures {
		failures[srv] = f
	}
	for user, devs := range remote {
		claimed[user] = devs
	}
	users := make(map[string][]byte, len(claimed))
	for user, devs := range claimed {
		users[user] = rawObject(devs)
	}
	fail, err := json.Marshal(failures)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, rawObject(map[string][]byte{
		"one_time_keys": rawObject(users),
		"failures":      fail,
	}))
}

// claimOne takes the oldest one-time key of the device for alg, or marks
// its fallback key used and returns it. raw is nil when there is neither.
// The caller's write transaction makes the take atomic: writes are
// serialised, so no two claims can return the same one-time key.
func claimOne(ctx context.Context, tx *storage.Tx, user, device, alg string) (keyID string, raw []byte, err error) {
	err = tx.QueryRow(ctx, `SELECT key_id, key_json FROM e2e_one_time_keys
		WHERE user_id = ? AND device_id = ? AND algorithm = ? ORDER BY seq, key_id LIMIT 1`,
		user, device, alg).Scan(&keyID, &raw)
	if err == nil {
		if _, err := tx.Exec(ctx, `DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?`,
			user, device, alg, keyID); err != nil {
			return "", nil, fmt.Errorf("keys: claim one-time key: %w", err)
		}
		return keyID, raw, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", nil, fmt.Errorf("keys: claim one-time key: %w", err)
	}
	err = tx.QueryRow(ctx, `SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?`,
		user, device, alg).Scan(&keyID, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("keys: claim fallback key: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = ? AND device_id = ? AND algorithm = ?`,
		user, device, alg); err != nil {
		return "", nil, fmt.Errorf("keys: claim fallback key: %w", err)
	}
	return keyID, raw, nil
}
