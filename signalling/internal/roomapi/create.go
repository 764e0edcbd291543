package roomapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Presets of POST /createRoom.
const (
	presetPrivate = "private_chat"
	presetTrusted = "trusted_private_chat"
	presetPublic  = "public_chat"
)

type createRoomRequest struct {
	Visibility                string              `json:"visibility"`
	RoomAliasName             *string             `json:"room_alias_name"`
	Name                      *string             `json:"name"`
	Topic                     *string             `json:"topic"`
	Invite                    []string            `json:"invite"`
	Invite3PID                []json.RawMessage   `json:"invite_3pid"`
	RoomVersion               string              `json:"room_version"`
	CreationContent           json.RawMessage     `json:"creation_content"`
	InitialState              []initialStateEvent `json:"initial_state"`
	Preset                    string              `json:"preset"`
	IsDirect                  bool                `json:"is_direct"`
	PowerLevelContentOverride json.RawMessage     `json:"power_level_content_override"`
}

type initialStateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// plannedEvent is one state event createRoom sends after the power
// levels.
type plannedEvent struct {
	typ, stateKey string
	content       cjson.Value
}

// roomPlan is a createRoom request checked and turned into events.
type roomPlan struct {
	version  *rooms.Version
	creator  string
	create   cjson.Value
	power    cjson.Value
	alias    *roomAlias
	state    []plannedEvent // canonical alias, preset, initial_state, name, topic
	invites  []string
	isDirect bool
	public   bool
}

// objectOrNull parses raw (absent or null: an empty object) as a JSON
// object, or fails with 400 M_BAD_JSON naming field.
func objectOrNull(raw json.RawMessage, field string) (cjson.Value, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return cjson.Obj(), nil
	}
	v, err := cjson.Parse(raw)
	if err != nil || v.Kind() != cjson.Object {
		return cjson.Value{}, mxerr.BadJSON(field + " must be a JSON object")
	}
	return v, nil
}

// plan checks a createRoom request completely before anything is
// written, so that a refused request leaves nothing half-created.
func (a *API) plan(ctx context.Context, creator string, req *createRoomRequest) (*roomPlan, error) {
	p := &roomPlan{creator: creator, isDirect: req.IsDirect}
	switch req.Visibility {
	case "", visPrivate:
	case visPublic:
		p.public = true
	default:
		return nil, mxerr.InvalidParam("visibility must be public or private")
	}
	preset := req.Preset
	switch preset {
	case presetPrivate, presetTrusted, presetPublic:
	case "":
		// "If unspecified, the server should use the visibility to
		// determine which preset to use."
		preset = presetPrivate
		if p.public {
			preset = presetPublic
		}
	default:
		return nil, mxerr.InvalidParam(fmt.Sprintf("Unknown preset %q", req.Preset))
	}
	version := req.RoomVersion
	if version == "" {
		version = rooms.DefaultVersion
	}
	v, ok := rooms.LookupVersion(version)
	if !ok {
		return nil, mxerr.New(http.StatusBadRequest, mxerr.CodeUnsupportedVersion, fmt.Sprintf("Room version %q is not supported", version))
	}
	p.version = v
	if len(req.Invite3PID) > 0 {
		return nil, mxerr.InvalidParam("invite_3pid is not supported: this server has no identity server")
	}
	seen := map[string]bool{creator: true}
	for _, u := range req.Invite {
		if _, err := rooms.ParseUserID(u); err != nil {
			return nil, mxerr.InvalidParam(fmt.Sprintf("Invalid user ID %q in invite", u))
		}
		if !seen[u] {
			seen[u] = true
			p.invites = append(p.invites, u)
		}
	}

	// m.room.create: the server sets creator and room_version.
	create, err := objectOrNull(req.CreationContent, "creation_content")
	if err != nil {
		return nil, err
	}
	create = create.Without("creator", "room_version")
	creators := map[string]bool{}
	if v.PrivilegedCreators {
		creators[creator] = true
		var extra []string
		if ac, ok := create.Get("additional_creators"); ok {
			if ac.Kind() != cjson.Array {
				return nil, mxerr.BadJSON("creation_content.additional_creators must be an array of user IDs")
			}
			for _, e := range ac.Array() {
				s, isStr := e.Str()
				if _, err := rooms.ParseUserID(s); !isStr || err != nil {
					return nil, mxerr.BadJSON("creation_content.additional_creators must be an array of user IDs")
				}
				extra = append(extra, s)
			}
		}
		if preset == presetTrusted {
			// "For trusted_private_chat, the users specified in the invite
			// parameter SHOULD also be appended to additional_creators",
			// deduplicated.
			extra = append(extra, p.invites...)
		}
		var list []cjson.Value
		for _, u := range extra {
			if !creators[u] {
				creators[u] = true
				list = append(list, cjson.Str(u))
			}
		}
		if len(list) > 0 {
			create = create.With("additional_creators", cjson.Arr(list...))
		}
	}
	p.create = create

	// m.room.power_levels: defaults, then the override on top.
	p.power, err = defaultPower(v, creator, preset, p.invites)
	if err != nil {
		return nil, err
	}
	override, err := objectOrNull(req.PowerLevelContentOverride, "power_level_content_override")
	if err != nil {
		return nil, err
	}
	for _, m := range override.Members() {
		p.power = p.power.With(m.Key, m.Value)
	}
	if v.PrivilegedCreators {
		if users, ok := p.power.Get("users"); ok {
			for _, m := range users.Members() {
				if creators[m.Key] {
					// Room version 12: creators "cannot be specified in the
					// users field of m.room.power_levels".
					return nil, mxerr.New(http.StatusBadRequest, mxerr.CodeInvalidRoomState,
						fmt.Sprintf("Room creator %s cannot be given a power level", m.Key))
				}
			}
		}
	}

	// State events after the power levels, in the spec's order.
	if req.RoomAliasName != nil {
		local := *req.RoomAliasName
		if local == "" || strings.ContainsAny(local, ":#") || strings.IndexFunc(local, unicode.IsSpace) >= 0 {
			return nil, mxerr.InvalidParam("Invalid characters in room alias")
		}
		alias, err := parseAlias("#" + local + ":" + a.cfg.ServerName)
		if err != nil {
			return nil, err
		}
		p.alias = &alias
		p.state = append(p.state, plannedEvent{"m.room.canonical_alias", "", cjson.Obj(cjson.M("alias", cjson.Str(alias.full)))})
	}
	initial := map[[2]string]bool{}
	var initialEvents []plannedEvent
	for i, e := range req.InitialState {
		if e.Type == "" {
			return nil, mxerr.BadJSON(fmt.Sprintf("initial_state[%d]: missing type", i))
		}
		c, err := cjson.Parse(e.Content)
		if err != nil || c.Kind() != cjson.Object {
			return nil, mxerr.BadJSON(fmt.Sprintf("initial_state[%d]: content must be a JSON object", i))
		}
		initial[[2]string{e.Type, e.StateKey}] = true
		initialEvents = append(initialEvents, plannedEvent{e.Type, e.StateKey, c})
	}
	joinRule, guest := "invite", "can_join"
	if preset == presetPublic {
		joinRule, guest = "public", "forbidden"
	}
	for _, pe := range []plannedEvent{
		{"m.room.join_rules", "", cjson.Obj(cjson.M("join_rule", cjson.Str(joinRule)))},
		{"m.room.history_visibility", "", cjson.Obj(cjson.M("history_visibility", cjson.Str(hvShared)))},
		{"m.room.guest_access", "", cjson.Obj(cjson.M("guest_access", cjson.Str(guest)))},
	} {
		// initial_state "takes precedence over events set by preset".
		if !initial[[2]string{pe.typ, pe.stateKey}] {
			p.state = append(p.state, pe)
		}
	}
	p.state = append(p.state, initialEvents...)
	if req.Name != nil {
		p.state = append(p.state, plannedEvent{"m.room.name", "", cjson.Obj(cjson.M("name", cjson.Str(*req.Name)))})
	}
	if req.Topic != nil {
		p.state = append(p.state, plannedEvent{"m.room.topic", "", cjson.Obj(
			cjson.M("topic", cjson.Str(*req.Topic)),
			cjson.M("m.topic", cjson.Obj(cjson.M("m.text", cjson.Arr(cjson.Obj(
				cjson.M("body", cjson.Str(*req.Topic)),
				cjson.M("mimetype", cjson.Str("text/plain")),
			))))),
		)})
	}

	// The creator must be able to send everything planned: otherwise
	// the request's initial state is invalid (400 M_INVALID_ROOM_STATE).
	lv := &power{users: map[string]int64{}, events: map[string]int64{}, creators: creators}
	lv.parseLevels(p.power)
	mine := lv.userLevel(creator)
	for _, pe := range p.state {
		if need := lv.eventLevel(pe.typ, true); mine < need {
			return nil, mxerr.New(http.StatusBadRequest, mxerr.CodeInvalidRoomState,
				fmt.Sprintf("The room creator's power level %d is below the %d needed to send %s", mine, need, pe.typ))
		}
	}
	if len(p.invites) > 0 && mine < lv.invite {
		return nil, mxerr.New(http.StatusBadRequest, mxerr.CodeInvalidRoomState, "The room creator's power level is below the invite level")
	}
	return p, nil
}

// defaultPower is the m.room.power_levels content of a new room
// (Synapse's defaults; "Creation", step 3).
func defaultPower(v *rooms.Version, creator, preset string, invites []string) (cjson.Value, error) {
	users := map[string]any{}
	if !v.PrivilegedCreators {
		// Versions 1-11: the creator (and, for trusted_private_chat, the
		// invitees) get 100. In version 12 creators have infinite power
		// and may not be listed.
		users[creator] = 100
		if preset == presetTrusted {
			for _, u := range invites {
				users[u] = 100
			}
		}
	}
	tombstone := 100
	if v.PrivilegedCreators {
		// "If the room's version is 12 or higher, the power level for
		// sending m.room.tombstone events MUST explicitly be higher than
		// state_default."
		tombstone = 150
	}
	invite := 50
	if preset != presetPublic {
		invite = 0
	}
	return cjson.FromGo(map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         invite,
		"historical":     100,
		"notifications":  map[string]any{"room": 50},
		"events": map[string]any{
			"m.room.name":               50,
			"m.room.avatar":             50,
			"m.room.canonical_alias":    50,
			"m.room.topic":              50,
			"m.room.power_levels":       100,
			"m.room.history_visibility": 100,
			"m.room.tombstone":          tombstone,
			"m.room.server_acl":         100,
			"m.room.encryption":         100,
		},
	})
}

func (a *API) createRoom(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	var req createRoomRequest
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	p, err := a.plan(ctx, s.UserID, &req)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if p.alias != nil {
		// Hold the alias from the check until it is stored, so a
		// concurrent request cannot take it in between.
		unlock, ok := a.aliasLocks.tryLock(p.alias.full)
		if !ok {
			endpoint.Fail(w, roomInUse(p.alias.full))
			return
		}
		defer unlock()
		if used, err := a.aliasInUse(ctx, p.alias.full); err != nil {
			endpoint.Fail(w, err)
			return
		} else if used {
			endpoint.Fail(w, roomInUse(p.alias.full))
			return
		}
	}
	roomID, err := a.build(ctx, p)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	// The creator may ask about the room next (state, invite): answer
	// only once membership lookups see it.
	if pos, err := a.deps.DB.MaxStreamPos(ctx); err == nil {
		_ = a.waitIndexed(ctx, pos)
	}
	endpoint.Write(w, map[string]string{"room_id": roomID})
}

func roomInUse(alias string) error {
	return mxerr.New(http.StatusBadRequest, mxerr.CodeRoomInUse, fmt.Sprintf("Room alias %s is already taken", alias))
}

// build sends a planned room's events in the order of "Creation".
func (a *API) build(ctx context.Context, p *roomPlan) (string, error) {
	st, err := a.deps.Rooms.Create(ctx, p.version.ID, rooms.UserID(p.creator), p.create)
	if err != nil {
		var na *rooms.NotAllowedError
		if errors.As(err, &na) {
			return "", mxerr.New(http.StatusBadRequest, mxerr.CodeInvalidRoomState, err.Error())
		}
		return "", err
	}
	roomID := string(st.Event.RoomID())
	a.versions.Store(roomID, p.version)
	log := a.log.With("room", roomID)
	fail := func(step string, err error) (string, error) {
		// The plan was checked beforehand; reaching here means a rule we
		// did not anticipate. The room exists with the events so far.
		log.Warn("createRoom stopped part-way", "step", step, "err", err)
		var me *mxerr.MatrixError
		if errors.As(err, &me) && me.Code == mxerr.CodeForbidden {
			return "", mxerr.New(http.StatusBadRequest, mxerr.CodeInvalidRoomState, me.Msg)
		}
		return "", err
	}
	if _, err := a.setMembership(ctx, roomID, p.creator, p.creator, "join", ""); err != nil {
		return fail("creator join", err)
	}
	empty := ""
	if _, err := a.deps.Rooms.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
		Type: "m.room.power_levels", StateKey: &empty, Sender: rooms.UserID(p.creator), Content: p.power,
	}); err != nil {
		return fail("power levels", appendErr(err))
	}
	if p.alias != nil {
		if err := a.createAlias(ctx, p.alias.full, roomID, p.creator); err != nil {
			if errors.Is(err, errAliasTaken) {
				return fail("alias", roomInUse(p.alias.full))
			}
			return fail("alias", err)
		}
	}
	for _, pe := range p.state {
		sk := pe.stateKey
		if _, err := a.deps.Rooms.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
			Type: pe.typ, StateKey: &sk, Sender: rooms.UserID(p.creator), Content: pe.content,
		}); err != nil {
			return fail(pe.typ, appendErr(err))
		}
	}
	for _, u := range p.invites {
		var extra []cjson.Member
		if p.isDirect {
			extra = append(extra, cjson.M("is_direct", cjson.Boolean(true)))
		}
		if err := a.inviteUser(ctx, roomID, p.creator, u, "", extra...); err != nil {
			return fail("invite", err)
		}
	}
	if p.public {
		if err := a.setVisibility(ctx, roomID, visPublic); err != nil {
			return fail("visibility", err)
		}
	}
	return roomID, nil
}
