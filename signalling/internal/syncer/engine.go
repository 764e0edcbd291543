package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// The sources of everything /sync delivers besides room events. Each is
// optional: a nil source contributes nothing.
type (
	// AccountData serves global and per-room account data.
	AccountData interface {
		AccountDataSince(ctx context.Context, userID string, since, upto int64) (global []json.RawMessage, rooms map[string][]json.RawMessage, err error)
	}
	// Devices serves to-device messages and E2EE key state.
	Devices interface {
		ToDevice(ctx context.Context, userID, deviceID string, since, upto int64, limit int) ([]json.RawMessage, int64, error)
		AckToDevice(ctx context.Context, userID, deviceID string, upto int64) error
		DeviceListChanges(ctx context.Context, userID string, since, upto int64) (changed, left []string, err error)
		OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error)
		UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error)
	}
	// Ephemeral serves typing notifications and receipts.
	Ephemeral interface {
		TypingPos() int64
		// TypingSince returns the rooms whose typing set changed after
		// since, each with its current typing users.
		TypingSince(since int64) map[string][]string
		ReceiptsSince(ctx context.Context, userID string, roomIDs []string, since, upto int64) (map[string]json.RawMessage, error)
	}
	// Annotations supplies what client-form events carry beyond the PDU:
	// the sender device's transaction ID and redactions (each redacted
	// event's redaction, in client form).
	Annotations interface {
		TxnID(ctx context.Context, userID, deviceID, eventID string) string
		RedactedBecause(ctx context.Context, roomID string, evs []*rooms.Event) (map[string][]byte, error)
	}
)

// Config configures the Engine.
type Config struct {
	// MaxTimeout caps a long-poll's timeout. Default 5 minutes.
	MaxTimeout time.Duration
	// ToDeviceLimit bounds the to-device messages in one response.
	// Default 100.
	ToDeviceLimit int
}

// Deps are the Engine's collaborators.
type Deps struct {
	Index       *Index
	DB          *storage.DB
	Hub         *stream.Hub
	AccountData AccountData
	Devices     Devices
	Ephemeral   Ephemeral
	Annotations Annotations
	Filters     Filters
	Logger      *slog.Logger
	Now         func() time.Time

	// RemoteInvites, if set, serves invites to rooms this server is not
	// in (remoteinvites.go).
	RemoteInvites RemoteInvites
}

// Engine answers syncs.
type Engine struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu sync.Mutex // guards acks
	// acks maps each device to the aux position up to which its
	// to-device messages are known to be deleted, so that a sync that
	// acknowledges nothing new costs no write. A device missing here
	// (first sync since start) is acknowledged once unconditionally.
	acks map[deviceKey]int64

	// shared holds the joined-room sections built once for every member
	// (shared.go).
	shared sharedSections
}

type deviceKey struct{ user, device string }

// New returns an Engine.
func New(cfg Config, deps Deps) (*Engine, error) {
	if deps.Index == nil || deps.DB == nil || deps.Hub == nil {
		return nil, errors.New("syncer: Index, DB and Hub are required")
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = 5 * time.Minute
	}
	if cfg.ToDeviceLimit <= 0 {
		cfg.ToDeviceLimit = 100
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Engine{cfg: cfg, deps: deps, log: deps.Logger, acks: map[deviceKey]int64{}}, nil
}

// Request is one sync.
type Request struct {
	UserID, DeviceID string
	// Since is nil for an initial sync.
	Since     *stream.Token
	Filter    *Filter
	FullState bool
	// StateAfter asks for each room's state at the end of its timeline
	// instead of at its start (MSC4222, stateafter.go).
	StateAfter StateAfterMode
	// Timeout is how long to wait for something new; 0 answers at once.
	Timeout time.Duration
}

// Sync answers req, waiting up to req.Timeout when there is nothing new
// (Client-Server API, "Syncing": the server holds the request open until
// an event arrives or the timeout passes).
func (e *Engine) Sync(ctx context.Context, req Request) (*Response, stream.Token, error) {
	// Subscribe before reading positions: a wake-up in between then
	// cannot be missed. A sync that will not wait (the realtime
	// channels hold their own subscription) needs none.
	var wake <-chan struct{}
	if req.Timeout > 0 && req.Since != nil && !req.FullState {
		sub := e.deps.Hub.Subscribe(req.UserID)
		defer sub.Close()
		wake = sub.C()
	}
	if req.Since != nil && e.deps.Devices != nil && req.DeviceID != "" {
		if err := e.ack(ctx, req.UserID, req.DeviceID, req.Since.Aux); err != nil {
			return nil, stream.Token{}, err
		}
	}
	timeout := min(req.Timeout, e.cfg.MaxTimeout)
	var timer <-chan time.Time
	if timeout > 0 && req.Since != nil && !req.FullState {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	for {
		resp, next, err := e.compute(ctx, req)
		if err != nil || timer == nil || !resp.empty() {
			return resp, next, err
		}
		select {
		case <-wake:
		case <-timer:
			return resp, next, nil
		case <-ctx.Done():
			return resp, next, nil
		}
	}
}

// ack deletes the to-device messages a client has acknowledged by syncing
// past them (Client-Server API, "Send-to-Device messaging": messages are
// deleted once the client confirms receipt with its next since token).
func (e *Engine) ack(ctx context.Context, user, device string, upto int64) error {
	k := deviceKey{user, device}
	e.mu.Lock()
	acked, known := e.acks[k]
	e.mu.Unlock()
	if known && upto <= acked {
		return nil
	}
	if err := e.deps.Devices.AckToDevice(ctx, user, device, upto); err != nil {
		return err
	}
	e.mu.Lock()
	e.acks[k] = max(e.acks[k], upto)
	e.mu.Unlock()
	return nil
}

// Positions is the current end of every stream: the token an initial
// sync would return.
func (e *Engine) Positions() stream.Token {
	t := stream.Token{Events: e.deps.Index.Head(), Aux: e.deps.DB.AuxPos()}
	if e.deps.Ephemeral != nil {
		t.Typing = e.deps.Ephemeral.TypingPos()
	}
	return t
}

// compute builds one response for (since, now].
func (e *Engine) compute(ctx context.Context, req Request) (*Response, stream.Token, error) {
	upto := e.Positions()
	var since stream.Token
	if req.Since != nil {
		since = *req.Since
		// A token from before a restart may be ahead of the in-memory
		// typing counter: everything typing is then new.
		if since.Typing > upto.Typing {
			since.Typing = 0
		}
	}
	resp := &Response{}
	b := &builder{e: e, ctx: ctx, req: req, since: since, initial: req.Since == nil, now: e.deps.Now()}

	// To-device first: when the batch is capped the aux part of the
	// token must stop at the last message delivered, and every other aux
	// source then reads up to the same point so nothing is skipped.
	// Nothing on the aux stream since the token: no to-device message,
	// account data, receipt or key change can be new.
	auxNew := b.initial || upto.Aux > since.Aux
	if d := e.deps.Devices; d != nil && req.DeviceID != "" {
		var msgs []json.RawMessage
		var last int64
		var err error
		if auxNew {
			msgs, last, err = d.ToDevice(ctx, req.UserID, req.DeviceID, since.Aux, upto.Aux, e.cfg.ToDeviceLimit)
			if err != nil {
				return nil, since, err
			}
		}
		if len(msgs) >= e.cfg.ToDeviceLimit && last < upto.Aux {
			upto.Aux = last
		}
		if len(msgs) > 0 {
			resp.ToDevice = &EventList{Events: msgs}
		}
		counts, err := d.OneTimeKeyCounts(ctx, req.UserID, req.DeviceID)
		if err != nil {
			return nil, since, err
		}
		if counts == nil {
			counts = map[string]int{}
		}
		resp.OTKCounts = counts
		fb, err := d.UnusedFallbackKeyTypes(ctx, req.UserID, req.DeviceID)
		if err != nil {
			return nil, since, err
		}
		if fb == nil {
			fb = []string{}
		}
		resp.UnusedFallbackKeys = &fb
		if !b.initial && auxNew {
			changed, left, err := d.DeviceListChanges(ctx, req.UserID, since.Aux, upto.Aux)
			if err != nil {
				return nil, since, err
			}
			if len(changed) > 0 || len(left) > 0 {
				resp.DeviceLists = &DeviceLists{Changed: changed, Left: left}
			}
		}
	}
	b.upto = upto
	rp, v, err := b.rooms()
	if err != nil {
		return nil, since, err
	}
	if err := b.remoteInvites(rp); err != nil {
		return nil, since, err
	}
	if !b.initial && v.covered {
		changed, left, err := b.membershipDeviceLists(v)
		if err != nil {
			return nil, since, err
		}
		if len(changed) > 0 || len(left) > 0 {
			if resp.DeviceLists == nil {
				resp.DeviceLists = &DeviceLists{}
			}
			resp.DeviceLists.Changed = dedupeSorted(append(resp.DeviceLists.Changed, changed...))
			resp.DeviceLists.Left = dedupeSorted(append(resp.DeviceLists.Left, left...))
		}
	}
	if len(rp.Join) > 0 || len(rp.Invite) > 0 || len(rp.Leave) > 0 {
		resp.Rooms = rp
	}
	if ad := e.deps.AccountData; ad != nil && auxNew {
		global, perRoom, err := ad.AccountDataSince(ctx, req.UserID, since.Aux, upto.Aux)
		if err != nil {
			return nil, since, err
		}
		global = filterTyped(global, req.Filter.accountDataFilter())
		if len(global) > 0 {
			resp.AccountData = &EventList{Events: global}
		}
		for room, evs := range perRoom {
			if jr := b.joinedRoomForExtras(rp, room); jr != nil {
				jr.AccountData.Events = append(jr.AccountData.Events, evs...)
			}
		}
		if len(rp.Join) > 0 && resp.Rooms == nil {
			resp.Rooms = rp
		}
	}
	b.moveStateAfter(rp)
	for room, jr := range rp.Join {
		jr.UnreadNotifications.NotificationCount, jr.UnreadNotifications.HighlightCount = e.deps.Index.Unread(req.UserID, room)
	}
	resp.NextBatch = upto.String()
	return resp, upto, nil
}

func (f *Filter) accountDataFilter() *EventFilter {
	if f == nil {
		return nil
	}
	return &f.AccountData
}

// filterTyped keeps the {"type": ...} events whose type passes ef.
func filterTyped(evs []json.RawMessage, ef *EventFilter) []json.RawMessage {
	if ef == nil || (ef.Types == nil && len(ef.NotTypes) == 0) {
		return evs
	}
	out := evs[:0:0]
	for _, ev := range evs {
		var t struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(ev, &t) == nil && allows(ef.Types, ef.NotTypes, t.Type, true) {
			out = append(out, ev)
		}
	}
	return out
}
