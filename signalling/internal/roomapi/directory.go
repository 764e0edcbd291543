package roomapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Directory visibilities (Client-Server API, "Published room directory").
const (
	visPublic  = "public"
	visPrivate = "private"
)

// setVisibility publishes or hides roomID in the directory.
func (a *API) setVisibility(ctx context.Context, roomID, vis string) error {
	return a.deps.DB.Update(ctx, func(tx *storage.Tx) error {
		if vis == visPrivate {
			_, err := tx.Exec(ctx, `DELETE FROM room_directory WHERE room_id = ?`, roomID)
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO room_directory (room_id, visibility) VALUES (?, ?)
			ON CONFLICT (room_id) DO UPDATE SET visibility = excluded.visibility`, roomID, vis)
		return err
	})
}

func (a *API) getVisibility(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	if err := a.requireRoom(ctx, roomID, mxerr.NotFound("Unknown room")); err != nil {
		endpoint.Fail(w, err)
		return
	}
	vis := visPrivate
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		err := tx.QueryRow(ctx, `SELECT visibility FROM room_directory WHERE room_id = ?`, roomID).Scan(&vis)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]string{"visibility": vis})
}

func (a *API) putVisibility(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	var body struct {
		Visibility *string `json:"visibility"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	vis := visPublic // "Defaults to public."
	if body.Visibility != nil {
		vis = *body.Visibility
	}
	if vis != visPublic && vis != visPrivate {
		endpoint.Fail(w, mxerr.InvalidParam("visibility must be public or private"))
		return
	}
	info, err := a.deps.DB.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		endpoint.Fail(w, mxerr.NotFound("Unknown room"))
		return
	} else if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if !s.Admin {
		// "Servers MAY implement additional access control checks": like
		// Synapse, only a joined member who may change the room's
		// canonical alias may publish the room.
		if err := a.requireJoined(ctx, roomID, s.UserID); err != nil {
			endpoint.Fail(w, err)
			return
		}
		p, err := a.powerIn(ctx, roomID, info.Current)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		if p.userLevel(s.UserID) < p.eventLevel("m.room.canonical_alias", true) {
			endpoint.Fail(w, mxerr.Forbidden("You may not change the room's directory visibility"))
			return
		}
	}
	if err := a.setVisibility(ctx, roomID, vis); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

// publicRoomsRequest is the body of POST /publicRooms (and the query of
// GET).
type publicRoomsRequest struct {
	Limit  *int   `json:"limit"`
	Since  string `json:"since"`
	Filter struct {
		GenericSearchTerm string             `json:"generic_search_term"`
		RoomTypes         *[]json.RawMessage `json:"room_types"`
	} `json:"filter"`
	IncludeAllNetworks   bool   `json:"include_all_networks"`
	ThirdPartyInstanceID string `json:"third_party_instance_id"`
	server               string
	roomTypes            map[string]bool // nil: any; "" stands for rooms without a type
}

// publicRoom is a PublishedRoomsChunk.
type publicRoom struct {
	RoomID           string `json:"room_id"`
	NumJoinedMembers int    `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	JoinRule         string `json:"join_rule,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
}

func (a *API) publicRoomsGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var req publicRoomsRequest
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			endpoint.Fail(w, mxerr.InvalidParam("limit must be an integer"))
			return
		}
		req.Limit = &n
	}
	req.Since = q.Get("since")
	req.server = q.Get("server")
	a.publicRooms(w, r, &req)
}

func (a *API) publicRoomsPost(w http.ResponseWriter, r *http.Request, _ *endpoint.Session) {
	var req publicRoomsRequest
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	req.server = r.URL.Query().Get("server")
	if req.Filter.RoomTypes != nil {
		req.roomTypes = map[string]bool{}
		for _, raw := range *req.Filter.RoomTypes {
			var t *string
			if err := json.Unmarshal(raw, &t); err != nil {
				endpoint.Fail(w, mxerr.BadJSON("filter.room_types must hold strings or null"))
				return
			}
			if t == nil {
				req.roomTypes[""] = true
			} else {
				req.roomTypes[*t] = true
			}
		}
	}
	a.publicRooms(w, r, &req)
}

// publicRooms answers a directory request.
func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, req *publicRoomsRequest) {
	if req.server != "" && req.server != a.cfg.ServerName {
		// FEDERATION: another server's directory is fetched over
		// federation (server-server API, "Public Room Directory").
		endpoint.Fail(w, mxerr.NotFound("Fetching another server's room directory is not supported yet"))
		return
	}
	resp, err := a.publicRoomsPage(r.Context(), req)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, resp)
}

// publicRoomsPage lists our directory: largest rooms first, then by room
// ID, paginated by offset ("o<n>" tokens).
func (a *API) publicRoomsPage(ctx context.Context, req *publicRoomsRequest) (map[string]any, error) {
	offset := 0
	if req.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.Since, "o"))
		if err != nil || n < 0 || !strings.HasPrefix(req.Since, "o") {
			return nil, mxerr.InvalidParam("Invalid since token")
		}
		offset = n
	}
	limit := 0 // none
	if req.Limit != nil {
		if *req.Limit < 0 {
			return nil, mxerr.InvalidParam("limit must not be negative")
		}
		limit = *req.Limit
	}
	var ids []string
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		var err error
		ids, err = tx.Strings(ctx, `SELECT room_id FROM room_directory WHERE visibility = ?`, visPublic)
		return err
	})
	if err != nil {
		return nil, err
	}
	term := strings.ToLower(req.Filter.GenericSearchTerm)
	all := make([]publicRoom, 0, len(ids))
	for _, id := range ids {
		pr, err := a.describeRoom(ctx, id)
		if err != nil {
			return nil, err
		}
		if term != "" && !strings.Contains(strings.ToLower(pr.Name+"\x00"+pr.Topic+"\x00"+pr.CanonicalAlias+"\x00"+pr.RoomID), term) {
			continue
		}
		if req.roomTypes != nil && !req.roomTypes[pr.RoomType] {
			continue
		}
		all = append(all, pr)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].NumJoinedMembers != all[j].NumJoinedMembers {
			return all[i].NumJoinedMembers > all[j].NumJoinedMembers
		}
		return all[i].RoomID < all[j].RoomID
	})
	resp := map[string]any{"total_room_count_estimate": len(all)}
	page := all[min(offset, len(all)):]
	if limit > 0 && len(page) > limit {
		page = page[:limit]
		resp["next_batch"] = "o" + strconv.Itoa(offset+limit)
	}
	if offset > 0 {
		prev := offset - limit
		if limit == 0 || prev < 0 {
			prev = 0
		}
		resp["prev_batch"] = "o" + strconv.Itoa(prev)
	}
	resp["chunk"] = page
	return resp, nil
}

// describeRoom reads a directory entry from the room's current state.
func (a *API) describeRoom(ctx context.Context, roomID string) (publicRoom, error) {
	pr := publicRoom{RoomID: roomID, JoinRule: "public"}
	info, err := a.deps.DB.Room(ctx, roomID)
	if err != nil {
		return pr, err
	}
	var ids []string
	for k, id := range info.Current {
		switch k.Type {
		case "m.room.name", "m.room.topic", "m.room.avatar", "m.room.canonical_alias", "m.room.join_rules",
			"m.room.history_visibility", "m.room.guest_access", "m.room.create", "m.room.member":
			if k.Type == "m.room.member" || k.StateKey == "" {
				ids = append(ids, id)
			}
		}
	}
	evs, err := a.parsedEvents(ctx, roomID, ids)
	if err != nil {
		return pr, err
	}
	for _, e := range evs {
		c := e.Content()
		switch e.Type() {
		case "m.room.member":
			if e.Membership() == "join" {
				pr.NumJoinedMembers++
			}
		case "m.room.name":
			pr.Name, _ = c.GetStr("name")
		case "m.room.topic":
			pr.Topic = plainTopic(e)
		case "m.room.avatar":
			pr.AvatarURL, _ = c.GetStr("url")
		case "m.room.canonical_alias":
			pr.CanonicalAlias, _ = c.GetStr("alias")
		case "m.room.join_rules":
			if s, ok := c.GetStr("join_rule"); ok {
				pr.JoinRule = s
			}
		case "m.room.history_visibility":
			s, _ := c.GetStr("history_visibility")
			pr.WorldReadable = s == hvWorldReadable
		case "m.room.guest_access":
			s, _ := c.GetStr("guest_access")
			pr.GuestCanJoin = s == "can_join"
		case "m.room.create":
			pr.RoomType, _ = c.GetStr("type")
		}
	}
	return pr, nil
}

// plainTopic is the text/plain topic of an m.room.topic event: the
// text/plain m.topic representation if any, else the topic field.
func plainTopic(e *rooms.Event) string {
	c := e.Content()
	if blocks, ok := c.Path("m.topic", "m.text"); ok {
		for _, b := range blocks.Array() {
			mt, hasMT := b.GetStr("mimetype")
			if body, ok := b.GetStr("body"); ok && (!hasMT || mt == "text/plain") {
				return body
			}
		}
	}
	s, _ := c.GetStr("topic")
	return s
}
