package syncer

import (
	"sort"

	"github.com/plexus-chat/plexus/signalling/internal/clientevent"

	"github.com/plexus-chat/plexus/rooms"
)

// entry is one event of the stream as the window keeps it.
type entry struct {
	pos  int64
	room string
	ev   *rooms.Event
	// visible is false for events clients never see: rejected,
	// soft-failed and outliers. They stay in the window so positions are
	// contiguous in it, but are skipped when delivering.
	visible bool
	// prep is the event's client form, rendered once for every recipient
	// (nil for invisible events).
	prep *clientevent.Prepared
}

// ring is the window of recent events, in stream order. It is not safe
// for concurrent use; Index guards it.
type ring struct {
	buf   []entry // circular
	start int     // index of the oldest entry
	n     int
	// floor is the position before the oldest entry the window can
	// answer from: a since token at or above it needs no storage read.
	floor int64
}

func newRing(capacity int, floor int64) *ring {
	return &ring{buf: make([]entry, capacity), floor: floor}
}

func (r *ring) push(e entry) {
	if r.n == len(r.buf) {
		r.floor = r.buf[r.start].pos
		r.buf[r.start] = entry{}
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
	r.buf[(r.start+r.n)%len(r.buf)] = e
	r.n++
}

func (r *ring) at(i int) *entry { return &r.buf[(r.start+i)%len(r.buf)] }

// covers reports whether every event after pos is in the window.
func (r *ring) covers(pos int64) bool { return pos >= r.floor }

// after calls fn for each entry with since < pos <= upto, in order.
func (r *ring) after(since, upto int64, fn func(*entry)) {
	i := sort.Search(r.n, func(i int) bool { return r.at(i).pos > since })
	for ; i < r.n; i++ {
		e := r.at(i)
		if e.pos > upto {
			return
		}
		fn(e)
	}
}
