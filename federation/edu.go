package federation

import (
	"context"
	"encoding/json"
	"fmt"
)

// What the client side asks of other servers about their users' devices
// and keys (Server-Server API, "End-to-End Encryption" and "Device
// Management"). The client side sends the request bodies it built and
// reads the answers itself: federation only signs and carries them.

// QueryRemoteKeys is POST /_matrix/federation/v1/user/keys/query on
// server: body is {"device_keys": {userID: [deviceID, ...]}} for users of
// that server, and the answer's raw JSON object is returned. A non-2xx
// answer or a network failure is an error; ctx bounds the wait (the
// client's timeout), within the transport's own per-request limit.
func (f *Federation) QueryRemoteKeys(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error) {
	return f.postRemote(ctx, server, "/_matrix/federation/v1/user/keys/query", body)
}

// ClaimRemoteKeys is POST /_matrix/federation/v1/user/keys/claim on
// server: body is {"one_time_keys": {userID: {deviceID: algorithm}}}, and
// the answer's raw JSON object is returned.
func (f *Federation) ClaimRemoteKeys(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error) {
	return f.postRemote(ctx, server, "/_matrix/federation/v1/user/keys/claim", body)
}

// RemoteDevices is GET /_matrix/federation/v1/user/devices/{userId} on
// the user's server: the raw answer (user_id, stream_id, devices and the
// cross-signing keys), for resynchronising a remote device list.
func (f *Federation) RemoteDevices(ctx context.Context, server, userID string) (json.RawMessage, error) {
	if server == f.cfg.ServerName {
		return nil, fmt.Errorf("federation: %s is this server", server)
	}
	var out json.RawMessage
	if err := f.client.Do(ctx, server, "GET", "/_matrix/federation/v1/user/devices/"+pathEscape(userID), nil, &out); err != nil {
		return nil, err
	}
	if !isJSONObject(out) {
		return nil, fmt.Errorf("federation: the devices answer of %s is not a JSON object", server)
	}
	return out, nil
}

func (f *Federation) postRemote(ctx context.Context, server, path string, body json.RawMessage) (json.RawMessage, error) {
	if server == f.cfg.ServerName {
		return nil, fmt.Errorf("federation: %s is this server", server)
	}
	var out json.RawMessage
	if err := f.client.Do(ctx, server, "POST", path, body, &out); err != nil {
		return nil, err
	}
	if !isJSONObject(out) {
		return nil, fmt.Errorf("federation: the answer of %s to %s is not a JSON object", server, path)
	}
	return out, nil
}

// isJSONObject reports whether b is one well-formed JSON object.
func isJSONObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}
