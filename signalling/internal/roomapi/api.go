package roomapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/invites"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// Members is what the API needs to know about membership; the sync
// engine, which tracks membership from the event stream, implements it.
type Members interface {
	// JoinedRooms lists the rooms userID is joined to.
	JoinedRooms(ctx context.Context, userID string) ([]string, error)
	// Membership is userID's current membership of roomID ("" if none).
	Membership(ctx context.Context, roomID, userID string) (string, error)
}

// Profiles gives the display name and avatar URL that go into a user's
// join events.
type Profiles interface {
	Profile(ctx context.Context, userID string) (displayname, avatarURL string, err error)
}

// Config configures the API.
type Config struct {
	// ServerName is this server's name: the domain of local users and
	// aliases.
	ServerName string
	// SendRate limits event sending per device; the zero value disables
	// the limit.
	SendRate ratelimit.Config
}

// Deps are the API's collaborators.
type Deps struct {
	Rooms   *rooms.Service
	DB      *storage.DB
	Hub     *stream.Hub
	Members Members
	// Profiles, if set, fills displayname and avatar_url of join events.
	Profiles Profiles
	// SetRoomAccountData stores per-room account data (m.fully_read).
	SetRoomAccountData func(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error
	// OnRemoteInvite, if set, is called after an invite of a user on
	// another server was appended: federation's hook to deliver it
	// (server-server API, "Inviting to a room"). Until federation exists
	// the invite is only in our copy of the room.
	OnRemoteInvite func(ctx context.Context, roomID, eventID, userID string)
	// RemoteJoin, if set, joins userID to a room this server is not in
	// through one of servers (federation's make_join/send_join), with
	// content as the membership event's content.
	RemoteJoin func(ctx context.Context, roomID, userID string, servers []string, content cjson.Value) error
	// Remote, if set, reaches rooms and users on other servers for
	// invites, rejections, knocks and aliases (remote.go).
	Remote Remote
	// Invites, if set, holds local users' invites to rooms this server
	// is not in (required with Remote).
	Invites *invites.Store
	// Backfill, if set, fetches up to limit events of a room's history
	// from before from (its backward extremities) from other servers and
	// stores it, for /messages to page back past this server's join.
	Backfill func(ctx context.Context, roomID string, from []string, limit int) error
	// WaitIndexed, if set, returns once Members reflects the event
	// stream up to pos (read-your-writes after a join).
	WaitIndexed func(ctx context.Context, pos int64) error
	// OnRead, if set, hears that userID has read roomID up to the event at
	// stream position pos (an unthreaded m.read or m.read.private
	// receipt), for the unread counts /sync reports.
	OnRead func(userID, roomID string, pos int64)
	// OnTyping, if set, hears every typing change of a local user, set
	// by the user or expired, so federation can send m.typing to the
	// other servers in the room. It must not block for long.
	OnTyping func(roomID, userID string, typing bool)
	// OnReceipt, if set, hears every public receipt a local user stored
	// (ts in milliseconds), so federation can send m.receipt.
	OnReceipt func(ctx context.Context, roomID, userID, receiptType, threadID, eventID string, ts int64)
	// Delayed, if set, schedules the events sent with
	// ?org.matrix.msc4140.delay= (MSC4140, send.go); without it such a
	// request is 403.
	Delayed Delayer
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// API serves the room endpoints.
type API struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	limiter *ratelimit.Limiter
	typing  *typingState

	// versions caches room versions (room ID -> *rooms.Version): they
	// never change.
	versions sync.Map

	// txnLocks serialises requests with one transaction key, so two
	// identical requests racing produce one event.
	txnLocks keyedMutex
	// aliasLocks serialises creation of one alias.
	aliasLocks keyedMutex
}

// New builds the API.
func New(cfg Config, deps Deps) (*API, error) {
	if deps.Rooms == nil || deps.DB == nil || deps.Hub == nil || deps.Members == nil {
		return nil, errors.New("roomapi: Rooms, DB, Hub and Members are required")
	}
	if _, err := rooms.ParseServerName(cfg.ServerName); err != nil {
		return nil, fmt.Errorf("roomapi: server name: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.SetRoomAccountData == nil {
		deps.SetRoomAccountData = func(context.Context, string, string, string, json.RawMessage) error {
			return errors.New("roomapi: no room account data store")
		}
	}
	a := &API{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Logger.With("component", "roomapi"),
		limiter: ratelimit.New(cfg.SendRate, deps.Now),
	}
	a.typing = newTypingState(deps.Now, deps.Hub)
	a.typing.local = a.isLocal
	a.typing.onChange = deps.OnTyping
	return a, nil
}

// Close stops the typing expiry timer. It is idempotent.
func (a *API) Close() error {
	a.typing.close()
	return nil
}

const v3 = "/_matrix/client/v3"

// Register adds every endpoint to rt.
func (a *API) Register(rt *endpoint.Router) {
	// Creation and membership.
	rt.Authed("POST "+v3+"/createRoom", a.createRoom)
	rt.Authed("POST "+v3+"/join/{roomIdOrAlias}", a.joinByIDOrAlias)
	rt.Authed("POST "+v3+"/rooms/{roomId}/join", a.joinRoom)
	rt.Authed("POST "+v3+"/rooms/{roomId}/invite", a.invite)
	rt.Authed("POST "+v3+"/rooms/{roomId}/leave", a.leave)
	rt.Authed("POST "+v3+"/knock/{roomIdOrAlias}", a.knock)
	rt.Authed("POST "+v3+"/rooms/{roomId}/forget", a.forget)
	rt.Authed("POST "+v3+"/rooms/{roomId}/kick", a.kick)
	rt.Authed("POST "+v3+"/rooms/{roomId}/ban", a.ban)
	rt.Authed("POST "+v3+"/rooms/{roomId}/unban", a.unban)
	rt.Authed("GET "+v3+"/joined_rooms", a.joinedRooms)

	// Sending.
	rt.Authed("PUT "+v3+"/rooms/{roomId}/send/{eventType}/{txnId}", a.send)
	rt.Authed("PUT "+v3+"/rooms/{roomId}/state/{eventType}/{stateKey}", a.putState)
	rt.Authed("PUT "+v3+"/rooms/{roomId}/state/{eventType}/{$}", a.putState)
	rt.Authed("PUT "+v3+"/rooms/{roomId}/state/{eventType}", a.putState)
	rt.Authed("PUT "+v3+"/rooms/{roomId}/redact/{eventId}/{txnId}", a.redact)

	// Reading.
	rt.Authed("GET "+v3+"/rooms/{roomId}/state", a.getState)
	rt.Authed("GET "+v3+"/rooms/{roomId}/state/{eventType}/{stateKey}", a.getStateEvent)
	rt.Authed("GET "+v3+"/rooms/{roomId}/state/{eventType}/{$}", a.getStateEvent)
	rt.Authed("GET "+v3+"/rooms/{roomId}/state/{eventType}", a.getStateEvent)
	rt.Authed("GET "+v3+"/rooms/{roomId}/members", a.members)
	rt.Authed("GET "+v3+"/rooms/{roomId}/joined_members", a.joinedMembers)
	rt.Authed("GET "+v3+"/rooms/{roomId}/event/{eventId}", a.getEvent)
	rt.Authed("GET "+v3+"/rooms/{roomId}/context/{eventId}", a.context)
	rt.Authed("GET "+v3+"/rooms/{roomId}/messages", a.messages)

	// Aliases and the directory.
	rt.Authed("PUT "+v3+"/directory/room/{roomAlias}", a.putAlias)
	rt.Public("GET "+v3+"/directory/room/{roomAlias}", a.getAlias)
	rt.Authed("DELETE "+v3+"/directory/room/{roomAlias}", a.deleteAlias)
	rt.Authed("GET "+v3+"/rooms/{roomId}/aliases", a.roomAliases)
	rt.Public("GET "+v3+"/directory/list/room/{roomId}", a.getVisibility)
	rt.Authed("PUT "+v3+"/directory/list/room/{roomId}", a.putVisibility)
	rt.Public("GET "+v3+"/publicRooms", a.publicRoomsGet)
	rt.Authed("POST "+v3+"/publicRooms", a.publicRoomsPost)

	// Ephemeral data.
	rt.Authed("PUT "+v3+"/rooms/{roomId}/typing/{userId}", a.putTyping)
	rt.Authed("POST "+v3+"/rooms/{roomId}/receipt/{receiptType}/{eventId}", a.postReceipt)
	rt.Authed("POST "+v3+"/rooms/{roomId}/read_markers", a.readMarkers)

	// The room summary (summary.go).
	a.registerSummary(rt)
	// The event graph for the web client's drawing (graph.go).
	a.registerGraph(rt)
}

// roomVersion returns a stored room's version, or rooms.ErrUnknownRoom.
func (a *API) roomVersion(ctx context.Context, roomID string) (*rooms.Version, error) {
	if v, ok := a.versions.Load(roomID); ok {
		return v.(*rooms.Version), nil
	}
	var id string
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT version FROM rooms WHERE room_id = ?`, roomID).Scan(&id)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rooms.ErrUnknownRoom
	}
	if err != nil {
		return nil, err
	}
	v, ok := rooms.LookupVersion(id)
	if !ok {
		return nil, fmt.Errorf("roomapi: room %s has unsupported version %q", roomID, id)
	}
	a.versions.Store(roomID, v)
	return v, nil
}

// membership is userID's current membership of roomID, "" if none.
func (a *API) membership(ctx context.Context, roomID, userID string) (string, error) {
	return a.deps.Members.Membership(ctx, roomID, userID)
}

// requireJoined fails with 403 M_FORBIDDEN unless userID is joined to
// roomID (an unknown room also answers 403: the caller is not in it).
func (a *API) requireJoined(ctx context.Context, roomID, userID string) error {
	m, err := a.membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if m != "join" {
		return mxerr.Forbidden(fmt.Sprintf("User %s is not in room %s", userID, roomID))
	}
	return nil
}

// appendErr maps an error of rooms.Service.Append to the response the
// Client-Server API gives for it.
func appendErr(err error) error {
	var na *rooms.NotAllowedError
	var fe *rooms.FormatError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &na):
		return mxerr.Forbidden(na.Error())
	case errors.Is(err, rooms.ErrUnknownRoom):
		return mxerr.NotFound("Unknown room")
	case errors.As(err, &fe):
		// Client-Server API, "Size limits": 65536 bytes in federation
		// format, signatures included.
		if strings.Contains(fe.Reason, "larger than") {
			return mxerr.TooLarge("Event is larger than 65536 bytes")
		}
		return mxerr.BadJSON(fe.Error())
	}
	return err
}

// parseContent reads a request body that is an event's content: a JSON
// object, kept exactly as sent (canonical JSON, no floats).
func parseContent(r *http.Request) (cjson.Value, error) {
	b, err := endpoint.ReadBody(r, maxEventBody)
	if err != nil {
		return cjson.Value{}, err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		b = []byte("{}")
	}
	if !json.Valid(b) {
		return cjson.Value{}, mxerr.NotJSON("Content not JSON")
	}
	v, err := cjson.Parse(b)
	if err != nil {
		// Valid JSON that canonical JSON refuses: floats, duplicate keys,
		// integers out of range (appendices, "Canonical JSON").
		return cjson.Value{}, mxerr.BadJSON(err.Error())
	}
	if v.Kind() != cjson.Object {
		return cjson.Value{}, mxerr.BadJSON("Content must be a JSON object")
	}
	return v, nil
}

// maxEventBody bounds a request body that becomes event content: the whole
// event may not exceed 65536 bytes (Client-Server API, "Size limits").
const maxEventBody = 65536

// validRoomID checks a path room ID's grammar: 400 M_INVALID_PARAM.
func validRoomID(s string) error {
	if _, err := rooms.ParseRoomID(s); err != nil {
		return mxerr.InvalidParam(fmt.Sprintf("Invalid room ID %q", s))
	}
	return nil
}

// keyedMutex is a set of mutexes by key, created on demand and dropped
// when unused.
type keyedMutex struct {
	mu sync.Mutex // guards m
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns its unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// tryLock locks key unless it is held.
func (k *keyedMutex) tryLock(key string) (unlock func(), ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	if _, held := k.m[key]; held {
		return nil, false
	}
	e := &keyedEntry{refs: 1}
	e.mu.Lock()
	k.m[key] = e
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		delete(k.m, key)
		k.mu.Unlock()
	}, true
}

// requireRoom returns unknown when this server has no room roomID (each
// endpoint answers that case its own way) and any other lookup error as
// is.
func (a *API) requireRoom(ctx context.Context, roomID string, unknown *mxerr.MatrixError) error {
	_, err := a.roomVersion(ctx, roomID)
	if errors.Is(err, rooms.ErrUnknownRoom) {
		return unknown
	}
	return err
}
