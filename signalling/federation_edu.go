package signalling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/signalling/internal/keys"
)

// EDUs between servers (Server-Server API, "Typing Notifications",
// "Receipts", "Send-to-device messaging", "Device Management"): those
// received are delivered to local users through the same tables and
// wake-ups as local ones, so /sync needs nothing new; local typing,
// receipts and key changes go to the other servers in the user's rooms.

// EDU types handled here; the key and to-device ones are keys.EDU*.
const (
	eduTyping  = "m.typing"
	eduReceipt = "m.receipt"
)

// HandleEDU delivers one EDU received from origin (federation's /send).
// Unknown types are ignored. Malformed content, or content about users
// of a server other than origin, is an error and stores nothing; for
// m.receipt, an entry about a user not joined to its room is skipped
// and reported in the error while the others are stored.
func (s *Signalling) HandleEDU(ctx context.Context, origin, eduType string, content []byte) error {
	switch eduType {
	case eduTyping:
		return s.receiveTyping(ctx, origin, content)
	case eduReceipt:
		return s.receiveReceipts(ctx, origin, content)
	case keys.EDUDirectToDevice:
		return s.keys.ReceiveToDevice(ctx, origin, content)
	case keys.EDUDeviceListUpdate, keys.EDUSigningKeyUpdate:
		return s.receiveKeyChange(ctx, origin, eduType, content)
	}
	return nil
}

// onServer reports whether userID is a user of server.
func onServer(userID, server string) bool {
	_, srv, ok := strings.Cut(userID, ":")
	return ok && strings.HasPrefix(userID, "@") && srv == server
}

// receiveTyping handles m.typing: {room_id, user_id, typing}.
func (s *Signalling) receiveTyping(ctx context.Context, origin string, content []byte) error {
	var c struct {
		RoomID string `json:"room_id"`
		UserID string `json:"user_id"`
		Typing *bool  `json:"typing"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return fmt.Errorf("m.typing: %w", err)
	}
	switch {
	case c.RoomID == "" || c.Typing == nil:
		return errors.New("m.typing: room_id and typing are required")
	case !onServer(c.UserID, origin):
		return fmt.Errorf("m.typing: user %q is not on %s", c.UserID, origin)
	}
	return s.rooms.RemoteTyping(ctx, c.RoomID, c.UserID, *c.Typing)
}

// userReceipt is one user's receipt in an m.receipt EDU.
type userReceipt struct {
	EventIDs []string `json:"event_ids"`
	Data     struct {
		TS       *int64 `json:"ts"`
		ThreadID string `json:"thread_id"`
	} `json:"data"`
}

// receiveReceipts handles m.receipt: room ID -> receipt type -> user ID
// -> {event_ids, data: {ts, thread_id}}. Only m.read crosses servers
// (m.read.private never leaves its user's server); other types are
// ignored.
func (s *Signalling) receiveReceipts(ctx context.Context, origin string, content []byte) error {
	var c map[string]map[string]json.RawMessage
	if err := json.Unmarshal(content, &c); err != nil {
		return fmt.Errorf("m.receipt: %w", err)
	}
	type item struct {
		room, user string
		r          userReceipt
	}
	var items []item
	for room, byType := range c {
		raw, ok := byType["m.read"]
		if !ok {
			continue
		}
		var users map[string]userReceipt
		if err := json.Unmarshal(raw, &users); err != nil {
			return fmt.Errorf("m.receipt: %s: %w", room, err)
		}
		for user, r := range users {
			switch {
			case !onServer(user, origin):
				return fmt.Errorf("m.receipt: user %q is not on %s", user, origin)
			case len(r.EventIDs) == 0 || r.Data.TS == nil:
				return fmt.Errorf("m.receipt: %s in %s: event_ids and data.ts are required", user, room)
			}
			items = append(items, item{room, user, r})
		}
	}
	var errs []error
	for _, it := range items {
		for _, id := range it.r.EventIDs {
			if err := s.rooms.RemoteReceipt(ctx, it.room, it.user, it.r.Data.ThreadID, id, *it.r.Data.TS); err != nil {
				errs = append(errs, fmt.Errorf("m.receipt: %s in %s: %w", it.user, it.room, err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// receiveKeyChange handles m.device_list_update and m.signing_key_update:
// the user's device list changed, for the local users sharing a room
// with them. The content's keys are not kept: /keys/query asks the
// user's server.
func (s *Signalling) receiveKeyChange(ctx context.Context, origin, eduType string, content []byte) error {
	var c struct {
		UserID   string  `json:"user_id"`
		DeviceID *string `json:"device_id"`
		StreamID *int64  `json:"stream_id"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return fmt.Errorf("%s: %w", eduType, err)
	}
	if !onServer(c.UserID, origin) {
		return fmt.Errorf("%s: user %q is not on %s", eduType, c.UserID, origin)
	}
	if eduType == keys.EDUDeviceListUpdate && (c.DeviceID == nil || c.StreamID == nil) {
		return fmt.Errorf("%s: device_id and stream_id are required", eduType)
	}
	return s.keys.RemoteDevicesChanged(ctx, c.UserID)
}

// sendReceipt is roomapi's OnReceipt: a local user's m.read receipt goes
// to the other servers in the room as an m.receipt EDU.
func (s *Signalling) sendReceipt(ctx context.Context, roomID, userID, receiptType, threadID, eventID string, ts int64) {
	data := map[string]any{"ts": ts}
	if threadID != "" {
		data["thread_id"] = threadID
	}
	content, err := json.Marshal(map[string]any{roomID: map[string]any{receiptType: map[string]any{
		userID: map[string]any{"event_ids": []string{eventID}, "data": data},
	}}})
	if err == nil {
		err = s.sendToRoom(ctx, roomID, eduReceipt, content)
	}
	if err != nil {
		s.log.Warn("sending a receipt to other servers failed", "room", roomID, "user", userID, "err", err)
	}
}

// sendToRoom queues an EDU for the other servers with users in roomID.
func (s *Signalling) sendToRoom(ctx context.Context, roomID, eduType string, content json.RawMessage) error {
	servers, err := s.fed.ServersInRoom(ctx, roomID)
	if err != nil || len(servers) == 0 {
		return err
	}
	return s.fed.SendEDU(ctx, servers, eduType, content)
}

// typingOut sends local typing changes to other servers from its own
// goroutine: roomapi reports them from request handlers, its expiry
// timer and /sync, none of which should wait on federation's queue.
// Typing is ephemeral, so when the queue is full a change is dropped
// (the next change or the remote timeout corrects it).
type typingOut struct {
	s  *Signalling
	ch chan typingChange

	mu     sync.Mutex // guards closed, and sending on ch
	closed bool
	done   chan struct{}
	once   sync.Once
}

type typingChange struct {
	room, user string
	typing     bool
}

// typingQueue bounds the typing changes waiting to be queued.
const typingQueue = 256

func newTypingOut(s *Signalling) *typingOut {
	t := &typingOut{s: s, ch: make(chan typingChange, typingQueue), done: make(chan struct{})}
	go t.run()
	return t
}

// changed is roomapi's OnTyping.
func (t *typingOut) changed(roomID, userID string, typing bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	select {
	case t.ch <- typingChange{roomID, userID, typing}:
	default:
		t.s.log.Warn("typing notification for other servers dropped: queue full", "room", roomID)
	}
}

func (t *typingOut) run() {
	defer close(t.done)
	for c := range t.ch {
		// Server-Server API, "Typing Notifications": m.typing
		// {room_id, user_id, typing}.
		content, _ := json.Marshal(map[string]any{"room_id": c.room, "user_id": c.user, "typing": c.typing})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := t.s.sendToRoom(ctx, c.room, eduTyping, content); err != nil {
			t.s.log.Warn("sending typing to other servers failed", "room", c.room, "err", err)
		}
		cancel()
	}
}

// close stops accepting changes, sends those queued and waits. It is
// idempotent.
func (t *typingOut) close() {
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.ch)
		t.mu.Unlock()
		<-t.done
	})
}
