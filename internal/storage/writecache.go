package storage

// Commit is the only writer of a database (see the package documentation),
// so it can remember what it wrote instead of reading it back in the next
// batch. These caches hold committed facts only: a Commit stages its
// changes and applies them after the transaction commits.

// roomMeta is what Commit remembers about a room between batches. It saves
// the per-batch room lookup and, for the usual room without gaps, the
// missing_prevs cleanup.
type roomMeta struct {
	maxDepth   int64
	hasMissing bool // the room may have missing_prevs rows
}

// recentGroups maps recently committed event IDs to the group after them,
// because the next batch's first event almost always builds on the last
// event of the previous one. An event's group never changes once it has
// one, so entries cannot go stale. It is bounded crudely (emptied when
// full) because a miss costs only one indexed query.
type recentGroups struct {
	max int
	m   map[string]groupRef
}

const recentGroupsMax = 4096

func (r *recentGroups) get(eventID string) (groupRef, bool) {
	ref, ok := r.m[eventID]
	return ref, ok
}

func (r *recentGroups) add(eventID string, ref groupRef) {
	if ref.id == 0 {
		return // outliers and rejected events may still gain a group
	}
	if r.m == nil || len(r.m) >= r.max {
		r.m = make(map[string]groupRef, r.max)
	}
	r.m[eventID] = ref
}
