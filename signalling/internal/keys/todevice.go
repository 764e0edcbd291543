package keys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Send-to-device messaging (Client-Server API, "Send-to-Device
// messaging"): messages wait in to_device_inbox for each local device
// until its /sync acknowledges them, and in to_device_outbox for
// federation when addressed to other servers.

// delivery is one message for one local device.
type delivery struct {
	user, device string
}

// handleSendToDevice is PUT /sendToDevice/{eventType}/{txnId}.
func (k *Keys) handleSendToDevice(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if req.Messages == nil {
		endpoint.Fail(w, mxerr.MissingParam("Missing parameter: messages"))
		return
	}
	evType, txnID := r.PathValue("eventType"), r.PathValue("txnId")
	ctx := r.Context()

	// Resolve recipients before the write transaction: listing devices
	// reads other packages' data.
	local := map[delivery][]byte{}
	remote := map[string]map[string]map[string][]byte{} // server -> user -> device -> content
	for _, user := range sortedKeys(req.Messages) {
		srv := serverOf(user)
		if srv == "" {
			endpoint.Fail(w, mxerr.InvalidParam("Invalid user ID "+user))
			return
		}
		byDevice := req.Messages[user]
		for dev, content := range byDevice {
			if !isObject(content) {
				endpoint.Fail(w, badJSON("messages.%s.%s must be an object", user, dev))
				return
			}
		}
		if srv != k.cfg.ServerName {
			if remote[srv] == nil {
				remote[srv] = map[string]map[string][]byte{}
			}
			remote[srv][user] = map[string][]byte{}
			for dev, content := range byDevice {
				remote[srv][user][dev] = content
			}
			continue
		}
		devices, err := k.deviceIDs(ctx, user)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		// "*" means every device the user has; a device also named
		// explicitly gets its own message, since each device receives at
		// most one per request. Unknown devices are dropped, as Synapse
		// does.
		if all, ok := byDevice["*"]; ok {
			for dev := range devices {
				local[delivery{user, dev}] = all
			}
		}
		for dev, content := range byDevice {
			if dev != "*" && devices[dev] {
				local[delivery{user, dev}] = content
			}
		}
	}

	sender := cjson.AppendString(nil, s.UserID)
	typ := cjson.AppendString(nil, evType)
	fresh := false
	err := k.db.Update(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO to_device_txns (user_id, device_id, event_type, txn_id, created_ts)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, event_type, txn_id) DO NOTHING`,
			s.UserID, s.DeviceID, evType, txnID, k.now().UnixMilli())
		if err != nil {
			return fmt.Errorf("keys: record transaction: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // a retransmission: already done
		}
		fresh = true
		for _, d := range sortedDeliveries(local) {
			ev := rawObject(map[string][]byte{"content": local[d], "sender": sender, "type": typ})
			if _, err := tx.Exec(ctx, `INSERT INTO to_device_inbox (pos, user_id, device_id, event_json) VALUES (?, ?, ?, ?)`,
				tx.NextPos(), d.user, d.device, ev); err != nil {
				return fmt.Errorf("keys: store to-device message: %w", err)
			}
		}
		for _, srv := range sortedKeys(remote) {
			users := make(map[string][]byte, len(remote[srv]))
			for user, devs := range remote[srv] {
				users[user] = rawObject(devs)
			}
			var id [16]byte
			if _, err := rand.Read(id[:]); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO to_device_outbox (pos, destination, sender, event_type, message_id, messages)
				VALUES (?, ?, ?, ?, ?, ?)`, tx.NextPos(), srv, s.UserID, evType, hex.EncodeToString(id[:]), rawObject(users)); err != nil {
				return fmt.Errorf("keys: queue to-device message: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if fresh {
		woken := map[string]bool{}
		for d := range local {
			if !woken[d.user] {
				woken[d.user] = true
				k.hub.Wake(d.user)
			}
		}
		if len(remote) > 0 {
			k.flushOutboxAfter(ctx)
		}
	}
	writeJSON(w, struct{}{})
}

func sortedDeliveries(m map[delivery][]byte) []delivery {
	out := make([]delivery, 0, len(m))
	for d := range m {
		out = append(out, d)
	}
	// Sorted so that positions follow a stable order within a request.
	sort.Slice(out, func(i, j int) bool {
		if out[i].user != out[j].user {
			return out[i].user < out[j].user
		}
		return out[i].device < out[j].device
	})
	return out
}

// ToDevice returns the device's pending messages at aux positions in
// (since, upto], at most limit of them in order of arrival, each an event
// {"content","sender","type"} for /sync's to_device.events. last is the
// position of the last message returned when the limit cut the list
// short, else upto: the aux position the /sync response may advance to
// for this stream.
func (k *Keys) ToDevice(ctx context.Context, userID, deviceID string, since, upto int64, limit int) (events []json.RawMessage, last int64, err error) {
	if since >= upto || limit <= 0 {
		return nil, upto, nil
	}
	err = k.db.View(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, `SELECT pos, event_json FROM to_device_inbox
			WHERE user_id = ? AND device_id = ? AND pos > ? AND pos <= ? ORDER BY pos LIMIT ?`,
			userID, deviceID, since, upto, limit)
		if err != nil {
			return fmt.Errorf("keys: read to-device messages: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var raw []byte
			if err := rows.Scan(&last, &raw); err != nil {
				return fmt.Errorf("keys: read to-device messages: %w", err)
			}
			events = append(events, raw)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	if len(events) < limit {
		last = upto
	}
	return events, last, nil
}

// AckToDevice deletes the device's messages at aux positions up to upto:
// the client has them ("Server behaviour": the next /sync with the
// next_batch of the response that carried them acknowledges them).
func (k *Keys) AckToDevice(ctx context.Context, userID, deviceID string, upto int64) error {
	return k.db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ? AND pos <= ?`,
			userID, deviceID, upto); err != nil {
			return fmt.Errorf("keys: acknowledge to-device messages: %w", err)
		}
		return nil
	})
}
