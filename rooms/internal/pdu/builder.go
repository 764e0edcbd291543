package pdu

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

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
	u, err := p.BuildUnsigned(v, s)
	if err != nil {
		return nil, err
	}
	u.Sign(s)
	return u.Event(), nil
}

// Unsigned is a built event still waiting for its signature. Its ID is
// final: the reference hash does not cover signatures. So a room can
// chain further events onto it at once and sign a whole batch later, in
// parallel, off the room's serial path.
type Unsigned struct {
	ev  *Event
	msg []byte // the bytes the signature covers
}

// signatureOverhead is how many bytes a signature by s adds to the
// canonical JSON of an event whose "signatures" is {}: the member
// "server":{"key id":"<86 base64 characters>"}.
func signatureOverhead(s Signer) int {
	return len(s.Server) + len(s.KeyID) + 96
}

// BuildUnsigned fills hashes and computes the event ID. The event's
// "signatures" is empty until Sign; until then it must not leave the
// goroutine that built it. s is needed to check the size limit the signed
// event will have.
func (p *Proto) BuildUnsigned(v *Version, s Signer) (*Unsigned, error) {
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
	ref := sha256.Sum256(msg)
	ev, err := newEvent(obj.With("signatures", cjson.Obj()), v, EventID("$"+signing.URLBase64.EncodeToString(ref[:])))
	if err != nil {
		return nil, fmt.Errorf("build event: %w", err)
	}
	if len(ev.json)+signatureOverhead(s) > MaxEventSize {
		return nil, formatErr("", "larger than %d bytes once signed", MaxEventSize)
	}
	return &Unsigned{ev: ev, msg: msg}, nil
}

// Event is the event; complete only after Sign.
func (u *Unsigned) Event() *Event { return u.ev }

// Sign adds s's signature to the event.
func (u *Unsigned) Sign(s Signer) {
	sig := signing.Base64.EncodeToString(ed25519.Sign(s.Key, u.msg))
	u.ev.obj = u.ev.obj.With("signatures", cjson.Obj(cjson.M(string(s.Server), cjson.Obj(cjson.M(s.KeyID, cjson.Str(sig))))))
	u.ev.json = cjson.Marshal(u.ev.obj)
}

// SignAll signs events on all cores; it returns when every one is signed.
func SignAll(us []*Unsigned, s Signer) {
	workers := min(runtime.GOMAXPROCS(0), len(us))
	if workers <= 1 {
		for _, u := range us {
			u.Sign(s)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; int(i) < len(us); i = next.Add(1) - 1 {
				us[i].Sign(s)
			}
		}()
	}
	wg.Wait()
}

func idArray(ids []EventID) cjson.Value {
	vs := make([]cjson.Value, len(ids))
	for i, id := range ids {
		vs[i] = cjson.Str(string(id))
	}
	return cjson.Arr(vs...)
}
