package cable

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/syncer"
)

// channel is a subscription's server side.
type channel interface {
	// run streams to the subscription until ctx ends.
	run(ctx context.Context)
	// perform runs a consumer's perform(action, data); data is the whole
	// data object, action included. It runs on the reader goroutine.
	perform(ctx context.Context, action string, data []byte)
}

// newChannel builds the channel a subscription's params name, checking
// that the user may subscribe. Errors become reject_subscription.
func (s *Server) newChannel(ctx context.Context, sess *endpoint.Session, sub *subscription, p params) (channel, error) {
	switch p.Channel {
	case SyncChannel:
		req, err := s.deps.Sync.ParseRequest(ctx, sess, p.Since, p.Filter, "", "")
		if err != nil {
			return nil, err
		}
		f := &feed{srv: s, sub: sub, user: sess.UserID, req: req, resume: make(chan struct{}, 1)}
		f.render = f.renderSync
		return f, nil
	case RoomChannel:
		if p.RoomID == "" {
			return nil, mxerr.MissingParam("room_id is required")
		}
		ok, err := s.deps.Rooms.CanSee(ctx, sess.UserID, p.RoomID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, mxerr.Forbidden("You cannot see this room")
		}
		req, err := s.deps.Sync.ParseRequest(ctx, sess, p.Since, "", "", "")
		if err != nil {
			return nil, err
		}
		// The first answer without a token is the room as an initial
		// sync shows it (the default timeline limit); from a token, the
		// timeline is everything since, up to the engine's maximum, so a
		// consumer that falls a little behind misses nothing.
		incremental := roomFilter(p.RoomID, syncer.MaxTimelineLimit)
		req.Filter = incremental
		if req.Since == nil {
			req.Filter = roomFilter(p.RoomID, syncer.DefaultTimelineLimit)
		}
		// The room channel must neither receive nor acknowledge the
		// device's to-device messages: they belong to the sync channel
		// (or /sync), and acknowledging deletes them.
		req.DeviceID = ""
		f := &feed{srv: s, sub: sub, user: sess.UserID, req: req, resume: make(chan struct{}, 1), incremental: incremental}
		rc := &roomChannel{feed: f, sess: sess, roomID: p.RoomID}
		f.render = rc.render
		return rc, nil
	}
	return nil, mxerr.InvalidParam("Unknown channel")
}

// roomFilter restricts a sync to one room with the given timeline limit
// and leaves out global account data.
func roomFilter(roomID string, limit int) *syncer.Filter {
	rooms, none := []string{roomID}, []string{}
	f := &syncer.Filter{}
	f.Room.Rooms = &rooms
	f.Room.Timeline.Limit = &limit
	f.AccountData.Types = &none
	f.Presence.Types = &none
	return f
}

// feed is the sync loop shared by both channels: it runs the sync engine
// from its token, pushes what render makes of each response, moves its
// token to next_batch, and waits on the user's stream.Hub subscription
// for the next wake-up. An idle feed is one goroutine blocked in that
// wait.
type feed struct {
	srv  *Server
	sub  *subscription
	user string
	// render appends a response's message payload to frame (the
	// subscription's frame, up to its "message" key), or reports false
	// for nothing to push; force asks for a payload even for an empty
	// response (the first answer of a subscription without a token).
	render func(frame []byte, resp *syncer.Response, force bool) ([]byte, bool)
	// resume (capacity 1) wakes the loop after a resume action.
	resume chan struct{}
	// started is set after the first sync; only step uses it.
	started bool
	// incremental, if set, replaces the request's filter after the
	// first sync.
	incremental *syncer.Filter

	mu sync.Mutex // guards req
	// req is the next sync to run; its Since moves to each next_batch.
	req syncer.Request
}

func (f *feed) run(ctx context.Context) {
	// Subscribe before the first sync: a wake-up in between cannot be
	// lost.
	wake := f.srv.deps.Hub.Subscribe(f.user)
	defer wake.Close()
	step := newCall(func() bool { return f.step(ctx) })
	for {
		if !f.srv.workers.call(step) {
			return
		}
		select {
		case <-wake.C():
		case <-f.resume:
		case <-ctx.Done():
			return
		}
	}
}

// step syncs once from the feed's token and pushes the result; false
// means the subscription is over.
func (f *feed) step(ctx context.Context) bool {
	f.mu.Lock()
	req := f.req
	f.mu.Unlock()
	req.Timeout = 0
	resp, next, err := f.srv.deps.Sync.Sync(ctx, req)
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		f.srv.log.Warn("cable: sync failed", "user", f.user, "err", err)
		// Tell the consumer; the next wake-up tries again.
		f.sub.reply(actionError("sync", "", err))
		return true
	}
	f.mu.Lock()
	if f.req.Since == req.Since { // no resume moved it meanwhile
		f.req.Since = &next
		f.req.FullState = false
	}
	if f.incremental != nil {
		f.req.Filter = f.incremental
	}
	f.mu.Unlock()
	frame, ok := f.render(f.sub.frameHead(frameSize(resp)), resp, !f.started && req.Since == nil)
	f.started = true
	return !ok || f.sub.pushFrame(append(frame, '}'))
}

// frameSize estimates the encoded size of a response's message, so that
// its frame is allocated once: the events' sizes plus room for the rest
// (a joined room's keys, tokens and counts take about 300 bytes).
func frameSize(r *syncer.Response) int {
	n := 128
	if r.Rooms != nil {
		for _, jr := range r.Rooms.Join {
			n += 384 + eventsSize(jr.State.Events) + eventsSize(jr.Timeline.Events) + eventsSize(jr.Ephemeral.Events) + eventsSize(jr.AccountData.Events)
		}
		for _, ir := range r.Rooms.Invite {
			n += 64 + eventsSize(ir.InviteState.Events)
		}
		for _, lr := range r.Rooms.Leave {
			n += 128 + eventsSize(lr.State.Events) + eventsSize(lr.Timeline.Events) + eventsSize(lr.AccountData.Events)
		}
	}
	for _, l := range [...]*syncer.EventList{r.AccountData, r.Presence, r.ToDevice} {
		if l != nil {
			n += eventsSize(l.Events)
		}
	}
	return n
}

func eventsSize(evs []json.RawMessage) int {
	n := 0
	for _, ev := range evs {
		n += len(ev) + 1
	}
	return n
}

// perform handles the sync channel's one action, resume {since}: the
// feed continues from that token (the consumer missed something, e.g.
// its handler failed). An absent since restarts with an initial sync.
func (f *feed) perform(ctx context.Context, act string, data []byte) {
	if act != "resume" {
		f.sub.reply(actionError(act, "", mxerr.New(400, mxerr.CodeUnrecognized, "Unknown action")))
		return
	}
	var d struct {
		Since string `json:"since"`
	}
	if err := endpoint.Unmarshal(data, &d); err != nil {
		f.sub.reply(actionError(act, "", err))
		return
	}
	f.mu.Lock()
	cur := f.req
	f.mu.Unlock()
	// Parse the token the way the subscription's was parsed.
	req, err := f.srv.deps.Sync.ParseRequest(ctx, &endpoint.Session{UserID: cur.UserID, DeviceID: cur.DeviceID}, d.Since, "", "", "")
	if err != nil {
		f.sub.reply(actionError(act, "", err))
		return
	}
	f.mu.Lock()
	f.req.Since = req.Since
	f.mu.Unlock()
	select {
	case f.resume <- struct{}{}:
	default:
	}
}

func (f *feed) renderSync(frame []byte, resp *syncer.Response, force bool) ([]byte, bool) {
	if !force && empty(resp) {
		return nil, false
	}
	return appendSync(frame, resp), true
}

// empty mirrors the sync engine's notion of a response with nothing a
// client would act on (device key counts alone do not count).
func empty(r *syncer.Response) bool {
	if r.Rooms != nil && (len(r.Rooms.Join) > 0 || len(r.Rooms.Invite) > 0 || len(r.Rooms.Leave) > 0) {
		return false
	}
	for _, l := range []*syncer.EventList{r.AccountData, r.Presence, r.ToDevice} {
		if l != nil && len(l.Events) > 0 {
			return false
		}
	}
	return r.DeviceLists == nil || (len(r.DeviceLists.Changed) == 0 && len(r.DeviceLists.Left) == 0)
}

// roomChannel streams one room's part of sync and takes the room actions.
type roomChannel struct {
	*feed
	sess   *endpoint.Session
	roomID string
}

// roomMessage is a room channel message: the room's section of a sync
// response, flattened, with the membership that section stands for.
type roomMessage struct {
	Type                string               `json:"type"` // "room"
	RoomID              string               `json:"room_id"`
	Membership          string               `json:"membership"` // join, invite or leave
	NextBatch           string               `json:"next_batch"`
	Summary             *syncer.Summary      `json:"summary,omitempty"`
	State               *syncer.EventList    `json:"state,omitempty"`
	Timeline            *syncer.Timeline     `json:"timeline,omitempty"`
	Ephemeral           *syncer.EventList    `json:"ephemeral,omitempty"`
	AccountData         *syncer.EventList    `json:"account_data,omitempty"`
	UnreadNotifications *syncer.UnreadCounts `json:"unread_notifications,omitempty"`
	InviteState         *syncer.EventList    `json:"invite_state,omitempty"`
}

func (rc *roomChannel) render(frame []byte, resp *syncer.Response, force bool) ([]byte, bool) {
	m := roomMessage{Type: "room", RoomID: rc.roomID, NextBatch: resp.NextBatch}
	rp := resp.Rooms
	switch {
	case rp != nil && rp.Join[rc.roomID] != nil:
		jr := rp.Join[rc.roomID]
		m.Membership = "join"
		m.Summary, m.State, m.Timeline, m.Ephemeral = jr.Summary, &jr.State, &jr.Timeline, &jr.Ephemeral
		m.AccountData, m.UnreadNotifications = &jr.AccountData, &jr.UnreadNotifications
	case rp != nil && rp.Leave[rc.roomID] != nil:
		lr := rp.Leave[rc.roomID]
		m.Membership = "leave"
		m.State, m.Timeline, m.AccountData = &lr.State, &lr.Timeline, &lr.AccountData
	case rp != nil && rp.Invite[rc.roomID] != nil:
		m.Membership = "invite"
		m.InviteState = &rp.Invite[rc.roomID].InviteState
	default:
		if !force {
			return nil, false
		}
		// A first answer with nothing for the room (e.g. the user can
		// see it through history visibility but is not a member): the
		// consumer still gets its token.
	}
	return appendRoom(frame, m), true
}

// Room channel actions.
const (
	actSendMessage = "send_message"
	actTyping      = "typing"
	actReceipt     = "receipt"
)

// actionReply answers a room channel action: {"type": "ack"} or
// {"type": "error"} with the Matrix errcode and error.
type actionReply struct {
	Type    string `json:"type"`
	Action  string `json:"action"`
	TxnID   string `json:"txn_id,omitempty"`
	EventID string `json:"event_id,omitempty"`
	Errcode string `json:"errcode,omitempty"`
	Error   string `json:"error,omitempty"`
}

func actionError(act, txnID string, err error) actionReply {
	code, msg := errorBody(err)
	return actionReply{Type: "error", Action: act, TxnID: txnID, Errcode: code, Error: msg}
}

func (rc *roomChannel) perform(ctx context.Context, act string, data []byte) {
	switch act {
	case actSendMessage:
		rc.sendMessage(ctx, data)
	case actTyping:
		var d struct {
			Typing  *bool `json:"typing"`
			Timeout int64 `json:"timeout"`
		}
		if err := endpoint.Unmarshal(data, &d); err != nil {
			rc.sub.reply(actionError(act, "", err))
			return
		}
		if d.Typing == nil {
			rc.sub.reply(actionError(act, "", mxerr.MissingParam("typing is required")))
			return
		}
		if d.Timeout < 0 {
			rc.sub.reply(actionError(act, "", mxerr.InvalidParam("timeout must not be negative")))
			return
		}
		rc.done(act, "", "", rc.srv.deps.Rooms.Typing(ctx, rc.sess, rc.roomID, *d.Typing, d.Timeout))
	case actReceipt:
		var d struct {
			ReceiptType string `json:"receipt_type"`
			EventID     string `json:"event_id"`
		}
		if err := endpoint.Unmarshal(data, &d); err != nil {
			rc.sub.reply(actionError(act, "", err))
			return
		}
		if d.EventID == "" {
			rc.sub.reply(actionError(act, "", mxerr.MissingParam("event_id is required")))
			return
		}
		if d.ReceiptType == "" {
			d.ReceiptType = "m.read"
		}
		rc.done(act, "", d.EventID, rc.srv.deps.Rooms.Receipt(ctx, rc.sess, rc.roomID, d.ReceiptType, d.EventID))
	case "resume":
		rc.feed.perform(ctx, act, data)
	default:
		rc.sub.reply(actionError(act, "", mxerr.New(400, mxerr.CodeUnrecognized, "Unknown action")))
	}
}

// sendMessage is send_message {type?, content, txn_id?}, the room
// channel's PUT /rooms/{roomId}/send/{eventType}/{txnId}.
func (rc *roomChannel) sendMessage(ctx context.Context, data []byte) {
	var d struct {
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
		TxnID   string          `json:"txn_id"`
	}
	if err := endpoint.Unmarshal(data, &d); err != nil {
		rc.sub.reply(actionError(actSendMessage, "", err))
		return
	}
	if len(d.Content) == 0 || d.Content[0] != '{' {
		rc.sub.reply(actionError(actSendMessage, d.TxnID, mxerr.BadJSON("content must be a JSON object")))
		return
	}
	if d.Type == "" {
		d.Type = "m.room.message"
	}
	txn := d.TxnID
	if txn == "" {
		// No idempotency asked for: a fresh transaction ID.
		var b [12]byte
		_, _ = rand.Read(b[:])
		txn = "cable." + base64.RawURLEncoding.EncodeToString(b[:])
	}
	id, err := rc.srv.deps.Rooms.Send(ctx, rc.sess, rc.roomID, d.Type, d.Content, txn)
	rc.done(actSendMessage, d.TxnID, id, err)
}

func (rc *roomChannel) done(act, txnID, eventID string, err error) {
	if err != nil {
		if !isMatrixError(err) {
			rc.srv.log.Warn("cable: room action failed", "action", act, "room", rc.roomID, "err", err)
		}
		rc.sub.reply(actionError(act, txnID, err))
		return
	}
	rc.sub.reply(actionReply{Type: "ack", Action: act, TxnID: txnID, EventID: eventID})
}
