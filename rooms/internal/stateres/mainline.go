package stateres

import (
	"math"
	"slices"
	"strings"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// noPosition is the mainline position of an event whose power levels
// chain never meets the mainline: the spec's ∞, "greater than any
// integer".
const noPosition = math.MaxInt32

// plAuth returns the m.room.power_levels event among node i's auth events,
// or -1. An event that (against auth events selection) cites several takes
// the first, as Synapse does.
func (g *graph) plAuth(i int32) int32 {
	return g.authByTuple(i, plTuple)
}

// mainlineSort performs step 3's ordering (v2 state resolution, "Mainline
// ordering"): events sorted by descending mainline position based on the
// power levels event pl (-1 for none, which gives every event position ∞),
// then ascending origin_server_ts, then ascending event ID.
//
// Positions are memoised per power levels event: the mainline's own
// events first, then every power levels event met while walking from a
// sorted event towards the mainline, so that each power levels event of
// the auth graph is walked past once however many events cite it.
func (r *resolver) mainlineSort(events []int32, pl int32) []int32 {
	g := r.g
	// pos holds the memoised position of a power levels node, counting
	// from the node itself: absent means not yet known, 0 means ∞ (its
	// chain never meets the mainline), v > 0 means position v-1.
	pos := make(map[int32]int32)
	for p, depth := pl, int32(0); p >= 0; p, depth = g.plAuth(p), depth+1 {
		if _, dup := pos[p]; dup {
			break // a cycle: impossible for hashed IDs, but never loop
		}
		pos[p] = depth + 1
	}
	var path []int32
	position := func(e int32) int32 {
		// The spec's list starts at e1, the power levels event in e's
		// auth events: e itself is never on it.
		path = path[:0]
		memo := int32(0)
		for p := g.plAuth(e); p >= 0; p = g.plAuth(p) {
			if v, ok := pos[p]; ok {
				memo = v
				break
			}
			pos[p] = 0 // provisional; also stops a (hash-impossible) cycle
			path = append(path, p)
		}
		for _, q := range path {
			pos[q] = memo
		}
		if memo == 0 {
			return noPosition
		}
		return memo - 1
	}

	type key struct {
		pos int32
		ts  int64
		id  pdu.EventID
		i   int32
	}
	keys := make([]key, len(events))
	for n, e := range events {
		keys[n] = key{pos: position(e), ts: g.nodes[e].ev.OriginServerTS(), id: g.nodes[e].ev.ID(), i: e}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.pos != b.pos {
			if a.pos > b.pos {
				return -1
			}
			return 1
		}
		if a.ts != b.ts {
			if a.ts < b.ts {
				return -1
			}
			return 1
		}
		return strings.Compare(string(a.id), string(b.id))
	})
	out := make([]int32, len(keys))
	for n, k := range keys {
		out[n] = k.i
	}
	return out
}
