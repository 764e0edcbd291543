package rooms

import (
	"context"
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// Template builds the event a remote user would send in roomID, for the
// resident side of make_join, make_leave and make_knock (server-server API,
// "Joining Rooms", "Leaving Rooms", "Knocking"): an unsigned proto-event
// with room_id, sender, type, state_key, content, prev_events (the forward
// extremities), auth_events (chosen as "Auth events selection" says), depth
// and origin_server_ts, and no hashes or signatures. Nothing is stored.
// The supported room versions have no top-level origin, so none is set.
//
// The event is checked against the current state first: one the auth
// rules refuse gives a *NotAllowedError (make_join answers 403). version
// is the room version.
func (s *Service) Template(ctx context.Context, roomID RoomID, le LocalEvent) (proto []byte, version string, err error) {
	if le.Type == pdu.TypeCreate {
		return nil, "", errors.New("rooms: no template for m.room.create")
	}
	r, err := s.do(ctx, roomID, &request{kind: reqTemplate, local: &le})
	if err != nil {
		return nil, "", err
	}
	return r.proto, r.version, nil
}

func (w *worker) template(le *LocalEvent) *result {
	p := w.newProto(le)
	u, err := p.BuildUnsigned(w.st.version, w.s.cfg.Signer)
	if err != nil {
		return &result{err: err}
	}
	if _, viaJoin := p.Content.Get("join_authorised_via_users_server"); viaJoin {
		// A restricted join needs its authorising server's signature to
		// pass (rule 4.2.1; v12 5.2.1); that server is this one, which
		// signs the real event at send_join.
		u.Sign(w.s.cfg.Signer)
	}
	ev := u.Event()
	if err := auth.Allowed(ev, w.getter(w.st.current)); err != nil {
		return &result{err: err}
	}
	proto := ev.Object().Without("hashes", "signatures", "unsigned")
	return &result{proto: cjson.Marshal(proto), version: w.st.version.ID}
}

// Complete turns a proto-event from make_join, make_leave or make_knock
// into our signed event (the joining side): it sets origin_server_ts,
// computes the content hash, signs with our key and derives the event ID.
// The proto must be an m.room.member event of a local user about
// themselves (ErrNotLocal otherwise) with membership join, leave or knock.
// Only the keys the room version's event format defines are taken from
// it; hashes, signatures and anything else are replaced or dropped.
func (s *Service) Complete(version string, proto []byte) (*Event, error) {
	v, ok := pdu.LookupVersion(version)
	if !ok {
		return nil, fmt.Errorf("rooms: unsupported room version %q", version)
	}
	obj, err := cjson.Parse(proto)
	if err != nil {
		return nil, &pdu.FormatError{Reason: err.Error()}
	}
	if obj.Kind() != cjson.Object {
		return nil, &pdu.FormatError{Reason: "proto-event is not an object"}
	}
	typ, _ := obj.GetStr("type")
	if typ != pdu.TypeMember {
		return nil, &pdu.FormatError{Field: "type", Reason: "not m.room.member"}
	}
	senderStr, ok := obj.GetStr("sender")
	if !ok {
		return nil, &pdu.FormatError{Field: "sender", Reason: "missing or not a string"}
	}
	sender, err := pdu.ParseUserID(senderStr)
	if err != nil {
		return nil, &pdu.FormatError{Field: "sender", Reason: err.Error()}
	}
	if sender.Domain() != s.cfg.Signer.Server {
		return nil, ErrNotLocal
	}
	if sk, ok := obj.GetStr("state_key"); !ok || sk != senderStr {
		return nil, &pdu.FormatError{Field: "state_key", Reason: "not the sender"}
	}
	content, ok := obj.Get("content")
	if !ok || content.Kind() != cjson.Object {
		return nil, &pdu.FormatError{Field: "content", Reason: "missing or not an object"}
	}
	switch m, _ := content.GetStr("membership"); m {
	case "join", "leave", "knock":
	default:
		return nil, &pdu.FormatError{Field: "content.membership", Reason: fmt.Sprintf("%q is not join, leave or knock", m)}
	}
	roomStr, ok := obj.GetStr("room_id")
	if !ok {
		return nil, &pdu.FormatError{Field: "room_id", Reason: "missing or not a string"}
	}
	roomID, err := pdu.ParseRoomID(roomStr)
	if err != nil {
		return nil, &pdu.FormatError{Field: "room_id", Reason: err.Error()}
	}
	depth, ok := obj.GetInt("depth")
	if !ok || depth < 1 {
		return nil, &pdu.FormatError{Field: "depth", Reason: "missing or not a positive integer"}
	}
	prevs, err := idList(obj, "prev_events")
	if err != nil {
		return nil, err
	}
	auths, err := idList(obj, "auth_events")
	if err != nil {
		return nil, err
	}
	if len(prevs) == 0 {
		return nil, &pdu.FormatError{Field: "prev_events", Reason: "empty"}
	}
	stateKey := senderStr
	p := &pdu.Proto{
		Type:           typ,
		StateKey:       &stateKey,
		Sender:         sender,
		RoomID:         roomID,
		Content:        content,
		PrevEvents:     prevs,
		AuthEvents:     auths,
		Depth:          depth,
		OriginServerTS: s.deps.Now().UnixMilli(),
	}
	// Build parses the result as an event of v: the remaining format
	// rules (sizes, limits, the room ID's form) are checked there.
	return p.Build(v, s.cfg.Signer)
}

func idList(obj cjson.Value, field string) ([]EventID, error) {
	arr, ok := obj.Get(field)
	if !ok || arr.Kind() != cjson.Array {
		return nil, &pdu.FormatError{Field: field, Reason: "missing or not an array"}
	}
	out := make([]EventID, 0, arr.Len())
	for _, el := range arr.Array() {
		s, ok := el.Str()
		if !ok {
			return nil, &pdu.FormatError{Field: field, Reason: "entry not a string"}
		}
		id, err := pdu.ParseEventID(s)
		if err != nil {
			return nil, &pdu.FormatError{Field: field, Reason: err.Error()}
		}
		out = append(out, id)
	}
	return out, nil
}

// Countersign adds this server's signature to a remote event, as the
// invitee's server does to an invite (server-server API, "Inviting to a
// room", PUT /invite v2) and the authorising server to a restricted join.
// The event must be well formed, its content hash must match, and every
// server other than this one that must sign it must have (with a key known
// through Deps.Keys).
func (s *Service) Countersign(version string, data []byte) (*Event, error) {
	v, ok := pdu.LookupVersion(version)
	if !ok {
		return nil, fmt.Errorf("rooms: unsupported room version %q", version)
	}
	ev, err := pdu.ParseEvent(data, v)
	if err != nil {
		return nil, err
	}
	for _, server := range pdu.RequiredSigners(ev) {
		if server == s.cfg.Signer.Server {
			continue
		}
		if err := pdu.VerifyServerSignature(ev, server, s.deps.Keys); err != nil {
			return nil, err
		}
	}
	if !ev.CheckContentHash() {
		return nil, &pdu.FormatError{Field: "hashes", Reason: "content hash mismatch"}
	}
	signer := s.cfg.Signer
	obj, err := pdu.SignEvent(v, ev.Object(), signer.Server, signer.KeyID, signer.Key)
	if err != nil {
		return nil, err
	}
	return pdu.NewEvent(obj, v)
}
