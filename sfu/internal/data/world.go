package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// maxKeyBytes bounds a world key (doc.go, "World messages").
const maxKeyBytes = 256

// worldMsg is one parsed world message: the sets and deletes one sender
// stamped with ts (unix ms), and per-key stamps in at that override ts
// (a client that merges its own queued changes sends them).
type worldMsg struct {
	ts  int64
	set map[string]json.RawMessage // values compacted
	del []string                   // sorted, unique
	at  map[string]int64
}

// tsFor is the stamp that orders key's change in m.
func (m *worldMsg) tsFor(key string) int64 {
	if t, ok := m.at[key]; ok {
		return t
	}
	return m.ts
}

func (m *worldMsg) empty() bool { return len(m.set) == 0 && len(m.del) == 0 }

// wireWorldMsg is the JSON shape of a world message (doc.go).
type wireWorldMsg struct {
	TS  *int64                     `json:"ts"`
	Set map[string]json.RawMessage `json:"set"`
	Del []string                   `json:"del"`
	At  map[string]int64           `json:"at"`
}

// parseWorldMsg parses and validates a world message. A missing or zero
// ts is left 0 for the caller to stamp with the server's clock.
func parseWorldMsg(b []byte) (*worldMsg, error) {
	// encoding/json would replace invalid UTF-8 silently; the snapshot is
	// persisted as a Matrix event, which must be valid UTF-8.
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: world message is not UTF-8", ErrMalformed)
	}
	var w wireWorldMsg
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: world message: %w", ErrMalformed, err)
	}
	m := &worldMsg{}
	if w.TS != nil {
		if *w.TS < 0 {
			return nil, fmt.Errorf("%w: world message: negative ts", ErrMalformed)
		}
		m.ts = *w.TS
	}
	if len(w.Set) > 0 {
		m.set = make(map[string]json.RawMessage, len(w.Set))
		for k, v := range w.Set {
			if err := checkKey(k); err != nil {
				return nil, err
			}
			c, err := canonical(v)
			if err != nil {
				return nil, fmt.Errorf("%w: world value for %q: %w", ErrMalformed, k, err)
			}
			m.set[k] = c
		}
	}
	if len(w.Del) > 0 {
		m.del = slices.Clone(w.Del)
		slices.Sort(m.del)
		m.del = slices.Compact(m.del)
		for _, k := range m.del {
			if err := checkKey(k); err != nil {
				return nil, err
			}
			if _, ok := m.set[k]; ok {
				return nil, fmt.Errorf("%w: world key %q both set and deleted", ErrMalformed, k)
			}
		}
	}
	for k, t := range w.At {
		if t < 0 {
			return nil, fmt.Errorf("%w: world message: negative ts for %q", ErrMalformed, k)
		}
		if _, ok := m.set[k]; ok {
			continue
		}
		if _, ok := slices.BinarySearch(m.del, k); ok {
			continue
		}
		return nil, fmt.Errorf("%w: world message: \"at\" names %q, neither set nor deleted", ErrMalformed, k)
	}
	if len(w.At) > 0 {
		m.at = w.At
	}
	return m, nil
}

// canonical re-encodes a JSON value as Matrix canonical JSON (spec
// appendices, "Canonical JSON"). The snapshot becomes the content of a
// Matrix state event, so its values must lie in canonical JSON's range:
// no fractions, integers within ±(2^53-1), no duplicate keys. Checking
// here refuses such a value to its sender at once, instead of failing
// the save of the whole world later. It also makes equal values encode
// alike whatever their key order.
func canonical(v json.RawMessage) (json.RawMessage, error) {
	if v == nil {
		return nil, errors.New("missing value")
	}
	cv, err := cjson.Parse(v)
	if err != nil {
		return nil, err
	}
	return cjson.Marshal(cv), nil
}

func checkKey(k string) error {
	if k == "" || len(k) > maxKeyBytes {
		return fmt.Errorf("%w: world key must be 1 to %d bytes", ErrMalformed, maxKeyBytes)
	}
	return nil
}
