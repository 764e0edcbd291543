package rooms

import (
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// ReferenceID returns the event ID that data names in room version v: "$"
// and the URL-safe base64 of its reference hash (Server-Server API,
// "Calculating the reference hash for an event"; rooms fragment
// "Event IDs" of versions 4 and up). Unlike ParseEvent it does not check
// the event format, so federation can name a malformed PDU in a /send
// answer by the ID its sender computed for it. ok is false when data is
// not a JSON object. A claimed "event_id" key is ignored, as ParseEvent
// ignores it.
func ReferenceID(v *Version, data []byte) (id EventID, ok bool) {
	if len(data) > 4*pdu.MaxEventSize {
		return "", false
	}
	obj, err := cjson.Parse(data)
	if err != nil || obj.Kind() != cjson.Object {
		return "", false
	}
	h := pdu.ReferenceHash(v, obj.Without("event_id"))
	return EventID("$" + signing.URLBase64.EncodeToString(h[:])), true
}
