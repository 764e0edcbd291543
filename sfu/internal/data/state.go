package data

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// state is the keyed world state: a pure last-writer-wins map with no
// clock, no goroutines and no lock of its own (Room serialises access).
type state struct {
	maxBytes int
	entries  map[string]*entry // live entries and tombstones
	live     int               // entries not deleted
	size     int               // len of the encoded snapshot
	tombs    int               // entries deleted
	version  uint64            // increments on every applied change

	// snap caches the encoded snapshot of version snapVer.
	snap    []byte
	snapVer uint64
}

// entry is one key's last write. A tombstone (deleted) keeps ts and by so
// that an older set arriving late loses to the delete; deletedAt is the
// server's clock (unix ms) when it became one, for expiry.
type entry struct {
	value     json.RawMessage
	ts        int64
	by        string
	deleted   bool
	deletedAt int64
	size      int // encoded size in the snapshot, 0 for a tombstone
}

// snapshotOverhead is len(`{"entries":{},"v":1}`).
const snapshotOverhead = 20

func newState(maxBytes int) *state {
	return &state{maxBytes: maxBytes, entries: map[string]*entry{}, size: snapshotOverhead}
}

// wins reports whether a write stamped (ts, by) replaces e: the later
// stamp wins, equal stamps go to the greater identity (a byte-wise string
// compare, so every server and client orders them alike), and a write
// equal in both (one sender, one millisecond) replaces the earlier one.
func wins(e *entry, ts int64, by string) bool {
	if e == nil {
		return true
	}
	if ts != e.ts {
		return ts > e.ts
	}
	return by >= e.by
}

// entrySize is the length of a snapshot entry,
// "key":{"by":"B","ts":N,"value":V}; the buffers keep the common short
// key and identity off the heap.
func entrySize(key string, value []byte, ts int64, by string) int {
	var kb, bb [128]byte
	var nb [24]byte
	return len(cjson.AppendString(kb[:0], key)) + len(`:{"value":`) + len(value) +
		len(`,"ts":`) + len(strconv.AppendInt(nb[:0], ts, 10)) +
		len(`,"by":`) + len(cjson.AppendString(bb[:0], by)) + 1
}

// totalSize is the snapshot size with live entries of summed size sum.
func totalSize(live, sum int) int {
	if live == 0 {
		return snapshotOverhead
	}
	return snapshotOverhead + sum + live - 1 // commas between entries
}

// apply applies m from identity by, per key last-writer-wins, and
// returns the part of m that won (nil if none). If the winning part would
// grow the snapshot past maxBytes nothing is applied and the error is
// ErrWorldFull. now (unix ms, server clock) stamps new tombstones.
func (s *state) apply(m *worldMsg, by string, now int64) (*worldMsg, error) {
	var out worldMsg
	out.ts = m.ts
	live, sum := s.live, s.size-snapshotOverhead
	if s.live > 0 {
		sum -= s.live - 1
	}
	for k, v := range m.set {
		ts := m.tsFor(k)
		e := s.entries[k]
		if !wins(e, ts, by) {
			continue
		}
		if out.set == nil {
			out.set = map[string]json.RawMessage{}
		}
		out.set[k] = v
		if e != nil && !e.deleted {
			sum -= e.size
		} else {
			live++
		}
		sum += entrySize(k, v, ts, by)
	}
	for _, k := range m.del {
		ts := m.tsFor(k)
		e := s.entries[k]
		if !wins(e, ts, by) {
			continue
		}
		out.del = append(out.del, k)
		if e != nil && !e.deleted {
			sum -= e.size
			live--
		}
	}
	if out.empty() {
		return nil, nil
	}
	if n := totalSize(live, sum); n > s.maxBytes && n > s.size {
		return nil, fmt.Errorf("%w: %d bytes would exceed %d", ErrWorldFull, n, s.maxBytes)
	}
	for k, v := range out.set {
		s.put(k, v, m.tsFor(k), by)
	}
	for _, k := range out.del {
		s.remove(k, m.tsFor(k), by, now)
	}
	s.size = totalSize(s.live, sum)
	s.version++
	for k := range out.set {
		out.setAt(k, m.tsFor(k))
	}
	for _, k := range out.del {
		out.setAt(k, m.tsFor(k))
	}
	return &out, nil
}

func (m *worldMsg) setAt(k string, ts int64) {
	if ts == m.ts {
		return
	}
	if m.at == nil {
		m.at = map[string]int64{}
	}
	m.at[k] = ts
}

func (s *state) put(k string, v json.RawMessage, ts int64, by string) {
	e := s.entries[k]
	if e == nil {
		e = &entry{}
		s.entries[k] = e
		s.live++
	} else if e.deleted {
		s.tombs--
		s.live++
	}
	*e = entry{value: v, ts: ts, by: by, size: entrySize(k, v, ts, by)}
}

func (s *state) remove(k string, ts int64, by string, now int64) {
	e := s.entries[k]
	if e == nil {
		e = &entry{}
		s.entries[k] = e
	} else if !e.deleted {
		s.live--
	} else {
		s.tombs--
	}
	*e = entry{ts: ts, by: by, deleted: true, deletedAt: now}
	s.tombs++
}

// expireTombstones forgets tombstones made before cutoff (unix ms) and,
// past max, the oldest ones: a set older than a forgotten delete would
// then win again, which is why the TTL is long against any reordering.
func (s *state) expireTombstones(cutoff int64, max int) {
	if s.tombs == 0 {
		return
	}
	for k, e := range s.entries {
		if e.deleted && e.deletedAt < cutoff {
			delete(s.entries, k)
			s.tombs--
		}
	}
	if s.tombs <= max {
		return
	}
	type tomb struct {
		key string
		at  int64
	}
	ts := make([]tomb, 0, s.tombs)
	for k, e := range s.entries {
		if e.deleted {
			ts = append(ts, tomb{k, e.deletedAt})
		}
	}
	slices.SortFunc(ts, func(a, b tomb) int { return int(a.at - b.at) })
	for _, t := range ts[:len(ts)-max] {
		delete(s.entries, t.key)
		s.tombs--
	}
}

// snapshot encodes the live entries (doc.go, "Snapshot") as canonical
// JSON, so equal states encode to equal bytes. The result is cached per version
// and must not be modified.
func (s *state) snapshot() []byte {
	if s.snap != nil && s.snapVer == s.version {
		return s.snap
	}
	keys := make([]string, 0, s.live)
	for k, e := range s.entries {
		if !e.deleted {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b := make([]byte, 0, s.size)
	// Canonical JSON: members in code point order at every level.
	b = append(b, `{"entries":{`...)
	for i, k := range keys {
		e := s.entries[k]
		if i > 0 {
			b = append(b, ',')
		}
		b = cjson.AppendString(b, k)
		b = append(b, `:{"by":`...)
		b = cjson.AppendString(b, e.by)
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, e.ts, 10)
		b = append(b, `,"value":`...)
		b = append(b, e.value...)
		b = append(b, '}')
	}
	b = append(b, `},"v":1}`...)
	s.snap, s.snapVer = b, s.version
	return b
}

// wireSnapshot is the JSON shape of a snapshot (doc.go).
type wireSnapshot struct {
	V       int `json:"v"`
	Entries map[string]struct {
		Value json.RawMessage `json:"value"`
		TS    int64           `json:"ts"`
		By    string          `json:"by"`
	} `json:"entries"`
}

// load merges a snapshot into s, per key last-writer-wins like any other
// change, so loading late cannot undo newer writes. It does not move the
// version: a loaded world is not a change that needs saving. A snapshot
// larger than the cap is accepted (the cap may have been lowered); sets
// that grow it are refused afterwards.
func (s *state) load(b []byte) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: snapshot is not UTF-8", ErrMalformed)
	}
	var w wireSnapshot
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: snapshot: %w", ErrMalformed, err)
	}
	if w.V != 1 {
		return fmt.Errorf("%w: snapshot version %d", ErrMalformed, w.V)
	}
	type item struct {
		key   string
		value json.RawMessage
		ts    int64
		by    string
	}
	items := make([]item, 0, len(w.Entries))
	for k, e := range w.Entries {
		if err := checkKey(k); err != nil {
			return err
		}
		if e.Value == nil || e.TS < 0 {
			return fmt.Errorf("%w: snapshot entry %q", ErrMalformed, k)
		}
		v, err := canonical(e.Value)
		if err != nil {
			return fmt.Errorf("%w: snapshot entry %q: %w", ErrMalformed, k, err)
		}
		items = append(items, item{k, v, e.TS, e.By})
	}
	ver := s.version
	for _, it := range items {
		if !wins(s.entries[it.key], it.ts, it.by) {
			continue
		}
		s.put(it.key, it.value, it.ts, it.by)
	}
	sum := 0
	for _, e := range s.entries {
		sum += e.size
	}
	s.size = totalSize(s.live, sum)
	s.version = ver
	s.snap = nil
	return nil
}
