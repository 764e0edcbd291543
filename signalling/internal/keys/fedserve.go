package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/plexus-chat/plexus/internal/storage"
)

// What other servers read of our users' keys (Server-Server API,
// "End-to-End Encryption" and "Device Management"), for signalling's
// fedlocal.Local. The callers pass local users only. A remote server sees
// what a user of it would: the keys as uploaded with the signatures
// their owner made, never a user-signing key nor its signatures.

// FederationQuery is POST /_matrix/federation/v1/user/keys/query for
// local users: device_keys, master_keys and self_signing_keys.
func (k *Keys) FederationQuery(ctx context.Context, query map[string][]string) ([]byte, error) {
	known := map[string]map[string]bool{}
	for user := range query {
		set, err := k.knownDevices(ctx, user)
		if err != nil {
			return nil, err
		}
		known[user] = set
	}
	devs := map[string][]byte{}
	masters, selfs, unused := map[string][]byte{}, map[string][]byte{}, map[string][]byte{}
	err := k.db.View(ctx, func(tx *storage.Tx) error {
		for user, devices := range query {
			// requester "": no user-signing key, no one's signatures
			// but the owner's.
			d, err := k.queryUser(ctx, tx, "", user, devices, known[user], masters, selfs, unused)
			if err != nil {
				return err
			}
			devs[user] = d
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rawObject(map[string][]byte{
		"device_keys":       rawObject(devs),
		"master_keys":       rawObject(masters),
		"self_signing_keys": rawObject(selfs),
	}), nil
}

// FederationClaim is POST /_matrix/federation/v1/user/keys/claim for
// local users: one key per device and algorithm, as POST /keys/claim.
func (k *Keys) FederationClaim(ctx context.Context, claim map[string]map[string]string) ([]byte, error) {
	claimed := map[string]map[string][]byte{}
	err := k.db.Update(ctx, func(tx *storage.Tx) error {
		for user, devices := range claim {
			for device, alg := range devices {
				keyID, raw, err := claimOne(ctx, tx, user, device, alg)
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
	for user, devices := range claim {
		for device := range devices {
			k.counts.invalidate(user, device)
		}
	}
	if err != nil {
		return nil, err
	}
	users := make(map[string][]byte, len(claimed))
	for user, devs := range claimed {
		users[user] = rawObject(devs)
	}
	return rawObject(map[string][]byte{"one_time_keys": rawObject(users)}), nil
}

// FederationDevices is GET /_matrix/federation/v1/user/devices/{userId}
// for a local user: the devices that have keys, each with its display
// name; the user's master and self-signing keys; and stream_id, the
// user's latest position on the device list stream (0 if none).
func (k *Keys) FederationDevices(ctx context.Context, userID string) ([]byte, error) {
	known, err := k.knownDevices(ctx, userID)
	if err != nil {
		return nil, err
	}
	devices := []byte{'['}
	out := map[string][]byte{}
	var stream int64
	err = k.db.View(ctx, func(tx *storage.Tx) error {
		stored, err := deviceKeys(ctx, tx, userID, nil)
		if err != nil {
			return err
		}
		names, err := displayNames(ctx, tx, userID)
		if err != nil {
			return err
		}
		sigs, err := signaturesOn(ctx, tx, userID, "")
		if err != nil {
			return err
		}
		for _, id := range sortedKeys(stored) {
			if known != nil && !known[id] {
				continue
			}
			dec, err := decorate(stored[id], sigs[id], nil)
			if err != nil {
				return err
			}
			dev := map[string][]byte{"device_id": quoteJSON(id), "keys": dec}
			if name, ok := names[id]; ok {
				dev["device_display_name"] = quoteJSON(name)
			}
			if len(devices) > 1 {
				devices = append(devices, ',')
			}
			devices = append(devices, rawObject(dev)...)
		}
		cross, err := crossSigningKeys(ctx, tx, userID)
		if err != nil {
			return err
		}
		for typ, field := range map[string]string{typeMaster: "master_key", typeSelfSigning: "self_signing_key"} {
			if ck, ok := cross[typ]; ok {
				if out[field], err = decorate(ck.raw, sigs[ck.id], nil); err != nil {
					return err
				}
			}
		}
		var max *int64
		if err := tx.QueryRow(ctx, `SELECT MAX(pos) FROM e2e_device_list_changes WHERE user_id = ?`, userID).Scan(&max); err != nil {
			return fmt.Errorf("keys: read device list position: %w", err)
		}
		if max != nil {
			stream = *max
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out["devices"] = append(devices, ']')
	out["user_id"] = quoteJSON(userID)
	out["stream_id"] = []byte(strconv.FormatInt(stream, 10))
	return rawObject(out), nil
}

// quoteJSON encodes s as a JSON string.
func quoteJSON(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}
