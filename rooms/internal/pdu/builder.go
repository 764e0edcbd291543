package pdu

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
)

// Proto is a new event before hashing and signing.
type Proto struct {
	Type     string
	StateKey *string
	Sender   UserID
	// RoomID is empty for a room version 12 m.room.create event.
	RoomID         RoomID
	Content        cjson.Value
	PrevEvents     []EventID
	AuthEvents     []EventID
	Depth          int64
	OriginServerTS int64
	// Redacts is placed where the room version wants it: at the top level
	// before v11, inside content from v11 on.
	Redacts EventID
}

// Signer is a server's identity for signing events.
type Signer struct {
	Server ServerName
	KeyID  string
	Key    ed25519.PrivateKey
}

// Build fills hashes and signatures and returns the finished event
// (server-server API, "Signing events": content hash first, then the
// signature over the redacted event, which covers the hash).
func (p *Proto) Build(v *Version, s Signer) (*Event, error) {
	content := p.Content
	if content.Kind() == cjson.Null {
		content = cjson.Obj()
	}
	if content.Kind() != cjson.Object {
		return nil, formatErr("content", "not an object")
	}
	ms := []cjson.Member{
		cjson.M("type", cjson.Str(p.Type)),
		cjson.M("sender", cjson.Str(string(p.Sender))),
		cjson.M("content", content),
		cjson.M("prev_events", idArray(p.PrevEvents)),
		cjson.M("auth_events", idArray(p.AuthEvents)),
		cjson.M("depth", cjson.Integer(p.Depth)),
		cjson.M("origin_server_ts", cjson.Integer(p.OriginServerTS)),
	}
	if p.RoomID != "" {
		ms = append(ms, cjson.M("room_id", cjson.Str(string(p.RoomID))))
	}
	if p.StateKey != nil {
		ms = append(ms, cjson.M("state_key", cjson.Str(*p.StateKey)))
	}
	obj := cjson.Obj(ms...)
	if p.Redacts != "" {
		if v.RedactsInContent {
			obj = obj.With("content", content.With("redacts", cjson.Str(string(p.Redacts))))
		} else {
			obj = obj.With("redacts", cjson.Str(string(p.Redacts)))
		}
	}
	h := ContentHash(obj)
	obj = obj.With("hashes", cjson.Obj(cjson.M("sha256", cjson.Str(signing.Base64.EncodeToString(h[:])))))
	// The signed bytes are the canonical redacted event without signatures
	// and unsigned, which are exactly the bytes the reference hash covers
	// (server-server API, "Signing events" and "Calculating the reference
	// hash"): hash them once for the event ID.
	msg := cjson.Marshal(Redact(v, obj).Without("signatures", "unsigned"))
	sig := signing.Base64.EncodeToString(ed25519.Sign(s.Key, msg))
	obj = obj.With("signatures", cjson.Obj(cjson.M(string(s.Server), cjson.Obj(cjson.M(s.KeyID, cjson.Str(sig))))))
	ref := sha256.Sum256(msg)
	ev, err := newEvent(obj, v, EventID("$"+signing.URLBase64.EncodeToString(ref[:])))
	if err != nil {
		return nil, fmt.Errorf("build event: %w", err)
	}
	return ev, nil
}

func idArray(ids []EventID) cjson.Value {
	vs := make([]cjson.Value, len(ids))
	for i, id := range ids {
		vs[i] = cjson.Str(string(id))
	}
	return cjson.Arr(vs...)
}
