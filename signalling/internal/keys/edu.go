package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
)

// Keys and to-device messages across servers (Server-Server API,
// "Device Management", "End-to-End Encryption", "Send-to-device
// messaging"): our users' device and cross-signing key changes go to the
// servers sharing a room with them as EDUs; to-device messages for remote
// users leave through to_device_outbox; EDUs from other servers arrive
// through the Receive* methods.

// EDU types (Server-Server API).
const (
	EDUDeviceListUpdate = "m.device_list_update"
	EDUSigningKeyUpdate = "m.signing_key_update"
	EDUDirectToDevice   = "m.direct_to_device"
)

// Remote is what this package asks of federation. Deps.Remote nil keeps
// everything on this server: remote users' keys are reported as failures
// and messages for them wait in the outbox.
type Remote interface {
	// SendEDU queues an EDU for the servers (persistently: once it
	// returns nil the EDU survives a restart).
	SendEDU(ctx context.Context, destinations []string, eduType string, content json.RawMessage) error
	// QueryRemoteKeys is POST /_matrix/federation/v1/user/keys/query on
	// server, with body {"device_keys": {...}}; it returns the answer.
	QueryRemoteKeys(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error)
	// ClaimRemoteKeys is POST /_matrix/federation/v1/user/keys/claim on
	// server, with body {"one_time_keys": {...}}; it returns the answer.
	ClaimRemoteKeys(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error)
}

// remoteDedupeDevice is the device_id of the to_device_txns rows that
// remember the message_ids of m.direct_to_device EDUs received: their
// user_id is the remote sender, so they never meet a local device's
// transaction IDs.
const remoteDedupeDevice = ""

// remoteDedupeTTL is how long a received message_id is remembered. A
// sending server retries a transaction for far less than this.
const remoteDedupeTTL = 7 * 24 * time.Hour

// remoteServers lists the other servers with users sharing a room with
// userID: where userID's device list updates go ("Device Management":
// "to all servers ... which share a room with the user").
func (k *Keys) remoteServers(ctx context.Context, userID string) ([]string, error) {
	users, err := k.sharedUsers(ctx, userID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, u := range users {
		if srv := serverOf(u); srv != "" && srv != k.cfg.ServerName && !seen[srv] {
			seen[srv] = true
			out = append(out, srv)
		}
	}
	return sortedStrings(out), nil
}

// announceDevice sends an m.device_list_update for one of a local
// user's devices (its keys changed, or it was deleted) to the servers
// sharing a room with the user. stream_id is the position of the user's
// latest device list change and prev_id the one before, so a receiver
// that missed an update notices the gap and resynchronises with
// /user/devices. A failure is logged: the next change, or a receiver's
// resync, makes up for it.
func (k *Keys) announceDevice(ctx context.Context, userID, deviceID string, deleted bool) {
	if k.deps.Remote == nil {
		return
	}
	servers, err := k.remoteServers(ctx, userID)
	if err != nil || len(servers) == 0 {
		if err != nil {
			k.log.Warn("keys: servers for a device list update", "user", userID, "err", err)
		}
		return
	}
	content := map[string][]byte{
		"user_id":   cjson.AppendString(nil, userID),
		"device_id": cjson.AppendString(nil, deviceID),
		"deleted":   []byte(strconv.FormatBool(deleted)),
	}
	err = k.db.View(ctx, func(tx *storage.Tx) error {
		// Every change of the user counts, as in FederationDevices'
		// stream_id, so a receiver that resynchronised from
		// /user/devices recognises the prev_id of the next update.
		rows, err := tx.Query(ctx, `SELECT pos FROM e2e_device_list_changes
			WHERE user_id = ? ORDER BY pos DESC LIMIT 2`, userID)
		if err != nil {
			return err
		}
		var positions []int64
		for rows.Next() {
			var p int64
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return err
			}
			positions = append(positions, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		content["stream_id"], content["prev_id"] = []byte("0"), []byte("[]")
		if len(positions) > 0 {
			content["stream_id"] = strconv.AppendInt(nil, positions[0], 10)
		}
		if len(positions) > 1 {
			content["prev_id"] = fmt.Appendf(nil, "[%d]", positions[1])
		}
		if deleted {
			return nil
		}
		stored, err := deviceKeys(ctx, tx, userID, []string{deviceID})
		if err != nil {
			return err
		}
		if raw, ok := stored[deviceID]; ok {
			sigs, err := signaturesOn(ctx, tx, userID, userID)
			if err != nil {
				return err
			}
			if content["keys"], err = decorate(raw, sigs[deviceID], nil); err != nil {
				return err
			}
		}
		names, err := displayNames(ctx, tx, userID)
		if err != nil {
			return err
		}
		if name, ok := names[deviceID]; ok {
			content["device_display_name"] = cjson.AppendString(nil, name)
		}
		return nil
	})
	if err == nil {
		err = k.deps.Remote.SendEDU(ctx, servers, EDUDeviceListUpdate, rawObject(content))
	}
	if err != nil {
		k.log.Warn("keys: sending a device list update failed", "user", userID, "device", deviceID, "err", err)
	}
}

// announceSigningKeys sends an m.signing_key_update with a local user's
// master and self-signing keys to the servers sharing a room with the
// user (Server-Server API, "Device Management": the user-signing key is
// private to its owner and never sent).
func (k *Keys) announceSigningKeys(ctx context.Context, userID string) {
	if k.deps.Remote == nil {
		return
	}
	servers, err := k.remoteServers(ctx, userID)
	if err != nil || len(servers) == 0 {
		if err != nil {
			k.log.Warn("keys: servers for a signing key update", "user", userID, "err", err)
		}
		return
	}
	content := map[string][]byte{"user_id": cjson.AppendString(nil, userID)}
	err = k.db.View(ctx, func(tx *storage.Tx) error {
		cross, err := crossSigningKeys(ctx, tx, userID)
		if err != nil {
			return err
		}
		sigs, err := signaturesOn(ctx, tx, userID, userID)
		if err != nil {
			return err
		}
		for typ, field := range map[string]string{typeMaster: "master_key", typeSelfSigning: "self_signing_key"} {
			if ck, ok := cross[typ]; ok {
				if content[field], err = decorate(ck.raw, sigs[ck.id], nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		err = k.deps.Remote.SendEDU(ctx, servers, EDUSigningKeyUpdate, rawObject(content))
	}
	if err != nil {
		k.log.Warn("keys: sending a signing key update failed", "user", userID, "err", err)
	}
}

// announceSignatures tells other servers of new signatures on a local
// user's own keys: a device signed by the self-signing key changes that
// device's keys (m.device_list_update), the master key signed by a
// device changes the cross-signing keys (m.signing_key_update).
func (k *Keys) announceSignatures(ctx context.Context, userID string, devices map[string][]byte, sigs []newSignature) {
	done := map[string]bool{}
	for _, ns := range sigs {
		if ns.targetUser != userID || done[ns.targetKey] {
			continue
		}
		done[ns.targetKey] = true
		if _, isDevice := devices[ns.targetKey]; isDevice {
			k.announceDevice(ctx, userID, ns.targetKey, false)
		} else if !done[""] {
			done[""] = true
			k.announceSigningKeys(ctx, userID)
		}
	}
}

// FlushOutbox hands the to-device messages waiting for other servers to
// federation, oldest first, each as one m.direct_to_device EDU with the
// message_id it was given when queued, and deletes each once federation
// holds it. A crash between the two sends a message twice with one
// message_id, which the receiver drops. Without Deps.Remote it does
// nothing. It runs after every request that queued a message and at
// start.
func (k *Keys) FlushOutbox(ctx context.Context) error {
	if k.deps.Remote == nil {
		return nil
	}
	k.outboxMu.Lock()
	defer k.outboxMu.Unlock()
	type queued struct {
		pos                          int64
		dest, sender, typ, messageID string
		messages                     []byte
	}
	for {
		var batch []queued
		err := k.db.View(ctx, func(tx *storage.Tx) error {
			rows, err := tx.Query(ctx, `SELECT pos, destination, sender, event_type, message_id, messages
				FROM to_device_outbox ORDER BY pos LIMIT 100`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var q queued
				if err := rows.Scan(&q.pos, &q.dest, &q.sender, &q.typ, &q.messageID, &q.messages); err != nil {
					return err
				}
				batch = append(batch, q)
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("keys: read the to-device outbox: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		for _, q := range batch {
			// Server-Server API, "Send-to-device messaging":
			// m.direct_to_device {sender, type, message_id, messages}.
			content := rawObject(map[string][]byte{
				"message_id": cjson.AppendString(nil, q.messageID),
				"messages":   q.messages,
				"sender":     cjson.AppendString(nil, q.sender),
				"type":       cjson.AppendString(nil, q.typ),
			})
			if err := k.deps.Remote.SendEDU(ctx, []string{q.dest}, EDUDirectToDevice, content); err != nil {
				return fmt.Errorf("keys: queue a to-device message for %s: %w", q.dest, err)
			}
			if err := k.db.Exec(ctx, `DELETE FROM to_device_outbox WHERE pos = ?`, q.pos); err != nil {
				return fmt.Errorf("keys: clear the to-device outbox: %w", err)
			}
		}
	}
}

// flushOutboxAfter runs FlushOutbox after a request queued messages; the
// request's own cancellation must not stop it half-way, and a failure
// leaves the messages for the next flush.
func (k *Keys) flushOutboxAfter(ctx context.Context) {
	if err := k.FlushOutbox(context.WithoutCancel(ctx)); err != nil {
		k.log.Warn("keys: to-device messages for other servers wait in the outbox", "err", err)
	}
}

// directToDevice is the content of an m.direct_to_device EDU.
type directToDevice struct {
	Sender    string                                `json:"sender"`
	Type      string                                `json:"type"`
	MessageID string                                `json:"message_id"`
	Messages  map[string]map[string]json.RawMessage `json:"messages"`
}

// ReceiveToDevice delivers an m.direct_to_device EDU from origin to the
// local devices it names ("*" for all of a user's devices; unknown
// devices and users of other servers are skipped), once per message_id
// of the sender. Malformed content, or a sender not on origin, is an
// error and nothing is stored.
func (k *Keys) ReceiveToDevice(ctx context.Context, origin string, content []byte) error {
	var m directToDevice
	if err := json.Unmarshal(content, &m); err != nil {
		return fmt.Errorf("keys: m.direct_to_device: %w", err)
	}
	switch {
	case serverOf(m.Sender) != origin:
		return fmt.Errorf("keys: m.direct_to_device: sender %q is not on %s", m.Sender, origin)
	case m.Type == "":
		return errors.New("keys: m.direct_to_device: missing type")
	case m.MessageID == "":
		return errors.New("keys: m.direct_to_device: missing message_id")
	case m.Messages == nil:
		return errors.New("keys: m.direct_to_device: missing messages")
	}
	local := map[delivery][]byte{}
	for _, user := range sortedKeys(m.Messages) {
		byDevice := m.Messages[user]
		for dev, c := range byDevice {
			if !isObject(c) {
				return fmt.Errorf("keys: m.direct_to_device: messages.%s.%s is not an object", user, dev)
			}
		}
		if !k.isLocal(user) {
			continue
		}
		devices, err := k.deviceIDs(ctx, user)
		if err != nil {
			return err
		}
		if all, ok := byDevice["*"]; ok {
			for dev := range devices {
				local[delivery{user, dev}] = all
			}
		}
		for dev, c := range byDevice {
			if dev != "*" && devices[dev] {
				local[delivery{user, dev}] = c
			}
		}
	}
	sender := cjson.AppendString(nil, m.Sender)
	typ := cjson.AppendString(nil, m.Type)
	now := k.now()
	fresh := false
	err := k.db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM to_device_txns WHERE user_id = ? AND device_id = ? AND created_ts < ?`,
			m.Sender, remoteDedupeDevice, now.Add(-remoteDedupeTTL).UnixMilli()); err != nil {
			return fmt.Errorf("keys: forget old message IDs: %w", err)
		}
		res, err := tx.Exec(ctx, `INSERT INTO to_device_txns (user_id, device_id, event_type, txn_id, created_ts)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, event_type, txn_id) DO NOTHING`,
			m.Sender, remoteDedupeDevice, m.Type, m.MessageID, now.UnixMilli())
		if err != nil {
			return fmt.Errorf("keys: record message ID: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // a repeat of a message already delivered
		}
		fresh = true
		for _, d := range sortedDeliveries(local) {
			ev := rawObject(map[string][]byte{"content": local[d], "sender": sender, "type": typ})
			if _, err := tx.Exec(ctx, `INSERT INTO to_device_inbox (pos, user_id, device_id, event_json) VALUES (?, ?, ?, ?)`,
				tx.NextPos(), d.user, d.device, ev); err != nil {
				return fmt.Errorf("keys: store to-device message: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if fresh {
		woken := map[string]bool{}
		for d := range local {
			if !woken[d.user] {
				woken[d.user] = true
				k.hub.Wake(d.user)
			}
		}
	}
	return nil
}

// RemoteDevicesChanged records that a remote user's devices or
// cross-signing keys changed (an m.device_list_update or
// m.signing_key_update from their server), so that the local users
// sharing a room with them see the user in /sync's
// device_lists.changed and query the keys again. A user who shares no
// room with a local user is ignored. Nothing of the remote keys is
// cached here, so there is nothing to drop: /keys/query always asks the
// user's server.
func (k *Keys) RemoteDevicesChanged(ctx context.Context, userID string) error {
	if serverOf(userID) == "" || k.isLocal(userID) {
		return fmt.Errorf("keys: %q is not a remote user", userID)
	}
	users, err := k.sharedUsers(ctx, userID)
	if err != nil {
		return err
	}
	sharesWithLocal := false
	for _, u := range users {
		if k.isLocal(u) {
			sharesWithLocal = true
			break
		}
	}
	if !sharesWithLocal {
		return nil
	}
	if err := k.db.Update(ctx, func(tx *storage.Tx) error { return recordChange(ctx, tx, userID, "") }); err != nil {
		return err
	}
	k.hub.Wake(users...)
	return nil
}
