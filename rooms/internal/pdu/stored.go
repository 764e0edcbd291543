package pdu

import (
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// ParseStored parses an event this server already accepted and stored
// under id. It runs the same format checks as ParseEvent but trusts the
// stored ID instead of recomputing the reference hash: loading state for
// a large room must not re-hash every event.
func ParseStored(data []byte, v *Version, id EventID) (*Event, error) {
	obj, err := cjson.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("stored event %s: %w", id, err)
	}
	e, err := newEvent(obj, v, id)
	if err != nil {
		return nil, fmt.Errorf("stored event %s: %w", id, err)
	}
	return e, nil
}
