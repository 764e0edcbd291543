package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// remoteFailure is what failures holds for a server we could not ask:
// there is no federation (Deps.Remote is nil).
var remoteFailure = json.RawMessage(`{"status":503,"message":"Remote servers cannot be queried"}`)

// handleQuery is POST /keys/query (Client-Server API, "Key management
// API").
func (k *Keys) handleQuery(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var req struct {
		DeviceKeys map[string]json.RawMessage `json:"device_keys"`
		Timeout    *int64                     `json:"timeout"`
	}
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	// Synapse answers a missing or non-object device_keys, or a value
	// that is not a list of strings, with M_BAD_JSON.
	if req.DeviceKeys == nil {
		endpoint.Fail(w, badJSON("'device_keys' must be a JSON object"))
		return
	}
	query := make(map[string][]string, len(req.DeviceKeys))
	for user, raw := range req.DeviceKeys {
		var ids []string
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || json.Unmarshal(raw, &ids) != nil {
			endpoint.Fail(w, badJSON("'device_keys' values must be a list of strings"))
			return
		}
		query[user] = ids
	}
	body, err := k.queryAll(r.Context(), s.UserID, query, remoteTimeout(req.Timeout))
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, body)
}

// query builds the /keys/query response for requester.
func (k *Keys) query(ctx context.Context, requester string, query map[string][]string) ([]byte, error) {
	known := map[string]map[string]bool{}
	for user := range query {
		if !k.isLocal(user) {
			continue
		}
		set, err := k.knownDevices(ctx, user)
		if err != nil {
			return nil, err
		}
		known[user] = set
	}
	deviceKeysOut := map[string][]byte{}
	masters, selfs, users := map[string][]byte{}, map[string][]byte{}, map[string][]byte{}
	failures := map[string]json.RawMessage{}
	err := k.db.View(ctx, func(tx *storage.Tx) error {
		for user, devices := range query {
			if !k.isLocal(user) {
				if srv := serverOf(user); srv != "" {
					failures[srv] = remoteFailure
				}
				continue
			}
			devs, err := k.queryUser(ctx, tx, requester, user, devices, known[user], masters, selfs, users)
			if err != nil {
				return err
			}
			deviceKeysOut[user] = devs
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	fail, err := json.Marshal(failures)
	if err != nil {
		return nil, err
	}
	return rawObject(map[string][]byte{
		"device_keys":       rawObject(deviceKeysOut),
		"failures":          fail,
		"master_keys":       rawObject(masters),
		"self_signing_keys": rawObject(selfs),
		"user_signing_keys": rawObject(users),
	}), nil
}

// queryUser returns one local user's device_keys entry and fills in the
// user's cross-signing keys. Every queried local user gets an entry, {}
// when it has no devices with keys, as in Synapse.
func (k *Keys) queryUser(ctx context.Context, tx *storage.Tx, requester, user string, devices []string,
	known map[string]bool, masters, selfs, users map[string][]byte) ([]byte, error) {
	stored, err := deviceKeys(ctx, tx, user, devices)
	if err != nil {
		return nil, err
	}
	names, err := displayNames(ctx, tx, user)
	if err != nil {
		return nil, err
	}
	sigs, err := signaturesOn(ctx, tx, user, requester)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(stored))
	for dev, raw := range stored {
		if known != nil && !known[dev] {
			continue
		}
		// keys.yaml, UnsignedDeviceInfo: device_display_name, "the
		// display name which the user set on the device".
		unsigned := []byte("{}")
		if name, ok := names[dev]; ok {
			unsigned, err = json.Marshal(map[string]string{"device_display_name": name})
			if err != nil {
				return nil, err
			}
		}
		dec, err := decorate(raw, sigs[dev], unsigned)
		if err != nil {
			return nil, err
		}
		out[dev] = dec
	}
	cross, err := crossSigningKeys(ctx, tx, user)
	if err != nil {
		return nil, err
	}
	for typ, dst := range map[string]map[string][]byte{typeMaster: masters, typeSelfSigning: selfs, typeUserSigning: users} {
		ck, ok := cross[typ]
		// keys.yaml: user_signing_keys only for "the user making the
		// request, if they queried their own device information".
		if !ok || (typ == typeUserSigning && user != requester) {
			continue
		}
		dec, err := decorate(ck.raw, sigs[ck.id], nil)
		if err != nil {
			return nil, err
		}
		dst[user] = dec
	}
	return rawObject(out), nil
}
