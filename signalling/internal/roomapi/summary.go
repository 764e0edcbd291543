package roomapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// The room summary (Client-Server API v1.15, "GET
// /_matrix/client/v1/room_summary/{roomIdOrAlias}", MSC3266) describes a
// room to someone who may not be in it: Element Call shows it on the
// lobby screen of a call link, and decides from its encryption whether
// the call will use per-participant E2EE.
//
// Only rooms this server holds are summarised. A room known only by an
// invite to it, or on another server, answers 404 like a room that does
// not exist: the via servers would be asked over federation, which this
// server does not do for summaries.

// summaryPaths are the routes of the summary: the stable one, and the
// two unstable ones of MSC3266 that clients still call (matrix-js-sdk's
// getRoomSummary, and so Element Call, uses ".../summary/{room}"; older
// clients ".../rooms/{room}/summary").
var summaryPaths = []string{
	"/_matrix/client/v1/room_summary/{roomIdOrAlias}",
	"/_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}",
	"/_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary",
}

// registerSummary adds the summary routes. They are public: the spec
// lets servers answer without a token for rooms anyone may look into,
// and a token, when sent, must be valid.
func (a *API) registerSummary(rt *endpoint.Router) {
	for _, p := range summaryPaths {
		rt.Public("GET "+p, func(w http.ResponseWriter, r *http.Request) { a.roomSummary(w, r, rt) })
	}
}

// roomSummary is the answer: a PublishedRoomsChunk plus the fields
// below. The encryption and room version go under both their spec names
// and MSC3266's unstable ones, which Element Call reads.
type roomSummary struct {
	publicRoom
	AllowedRoomIDs      []string `json:"allowed_room_ids,omitempty"`
	Encryption          string   `json:"encryption,omitempty"`
	UnstableEncryption  string   `json:"im.nheko.summary.encryption,omitempty"`
	RoomVersion         string   `json:"room_version"`
	UnstableRoomVersion string   `json:"im.nheko.summary.room_version"`
	// Membership is the caller's ("leave" when none, as Synapse
	// answers); absent for an unauthenticated request.
	Membership string `json:"membership,omitempty"`
}

// errNoSummary is the answer for a room that is unknown and for one the
// caller may not look into alike, so the summary reveals nothing about
// rooms that exist (spec: 404 "The room could not be found").
var errNoSummary = mxerr.NotFound("Room not found or is not accessible")

func (a *API) roomSummary(w http.ResponseWriter, r *http.Request, rt *endpoint.Router) {
	ctx := r.Context()
	var user string
	if hasToken(r) {
		s, err := rt.Session(r)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		user = s.UserID
	}
	roomID, _, err := a.roomAndServers(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	sum, err := a.summarise(ctx, roomID, user)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, sum)
}

// hasToken reports whether r carries an access token at all, in either
// of the places clients put it (endpoint.AccessToken).
func hasToken(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.URL.Query().Get("access_token") != ""
}

// summarise builds roomID's summary for user ("" when unauthenticated),
// or errNoSummary if the room is not here or not visible to user.
func (a *API) summarise(ctx context.Context, roomID, user string) (*roomSummary, error) {
	info, err := a.deps.DB.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNoSummary
	} else if err != nil {
		return nil, err
	}
	pr, err := a.describeRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	sum := &roomSummary{publicRoom: pr, RoomVersion: info.Version, UnstableRoomVersion: info.Version}
	var ids []string
	for _, k := range []storage.StateKey{{Type: "m.room.join_rules"}, {Type: "m.room.encryption"}} {
		if id, ok := info.Current[k]; ok {
			ids = append(ids, id)
		}
	}
	evs, err := a.parsedEvents(ctx, roomID, ids)
	if err != nil {
		return nil, err
	}
	// describeRoom reports a room without join rules as public, as a
	// directory entry may; for access it is not: the auth rules let
	// nobody join such a room uninvited.
	sum.JoinRule = "invite"
	for _, e := range evs {
		switch e.Type() {
		case "m.room.join_rules":
			if jr, ok := e.Content().GetStr("join_rule"); ok {
				sum.JoinRule = jr
			}
			sum.AllowedRoomIDs = allowedRooms(e)
		case "m.room.encryption":
			sum.Encryption, _ = e.Content().GetStr("algorithm")
			sum.UnstableEncryption = sum.Encryption
		}
	}
	if user != "" {
		m, err := a.membership(ctx, roomID, user)
		if err != nil {
			return nil, err
		}
		if m == "" {
			m = "leave"
		}
		sum.Membership = m
	}
	ok, err := a.summaryVisible(ctx, sum, user)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNoSummary
	}
	return sum, nil
}

// summaryVisible says whether user ("" when unauthenticated) may see the
// summary (MSC3266, "Modifications": the rules of the space hierarchy,
// MSC2946): a member, invitee or knocker always; anyone when the room is
// world-readable or anyone may join or knock; for a restricted room, a
// member of one of the rooms its join rule allows.
func (a *API) summaryVisible(ctx context.Context, sum *roomSummary, user string) (bool, error) {
	switch sum.Membership {
	case "join", "invite", "knock":
		return true, nil
	}
	if sum.WorldReadable {
		return true, nil
	}
	switch sum.JoinRule {
	case "public", "knock", "knock_restricted":
		return true, nil
	case "restricted":
		if user == "" {
			return false, nil
		}
		for _, room := range sum.AllowedRoomIDs {
			m, err := a.membership(ctx, room, user)
			if err != nil {
				return false, err
			}
			if m == "join" {
				return true, nil
			}
		}
	}
	return false, nil
}

// allowedRooms lists the rooms a restricted join rule names
// (Client-Server API, "m.room.join_rules": allow entries of type
// m.room_membership). Other join rules allow none, whatever their
// content says.
func allowedRooms(e *rooms.Event) []string {
	c := e.Content()
	if jr, _ := c.GetStr("join_rule"); jr != "restricted" && jr != "knock_restricted" {
		return nil
	}
	allow, ok := c.Get("allow")
	if !ok {
		return nil
	}
	var out []string
	for _, entry := range allow.Array() {
		if t, _ := entry.GetStr("type"); t != "m.room_membership" {
			continue
		}
		if id, ok := entry.GetStr("room_id"); ok {
			out = append(out, id)
		}
	}
	return out
}
