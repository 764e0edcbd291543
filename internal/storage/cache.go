package storage

import (
	"container/list"
	"sync"
)

// groupCache is an LRU of decoded state groups, bounded by the total number
// of state entries it holds rather than by group count, because one room's
// group can hold tens of thousands of entries and another's a dozen.
//
// Groups are immutable once committed but for one change: completing a
// partial-state room adds entries to its snapshots (partial.go), after
// which invalidate drops the groups from the first changed one on. Readers
// outside Commit put what they loaded through reader(), which refuses maps
// loaded before an invalidation. Maps handed out are shared and must not
// be modified; exported methods return copies.
type groupCache struct {
	max int // entry budget

	mu   sync.Mutex // guards size, ll, m and epoch
	size int
	ll   *list.List // front = most recently used; values are *cacheEntry
	m    map[int64]*list.Element
	// epoch counts invalidations.
	epoch uint64
}

type cacheEntry struct {
	id    int64
	state StateMap
}

func newGroupCache(maxEntries int) *groupCache {
	return &groupCache{max: maxEntries, ll: list.New(), m: map[int64]*list.Element{}}
}

// weight charges each group at least one so that empty groups still count.
func weight(m StateMap) int { return len(m) + 1 }

func (c *groupCache) get(id int64) (StateMap, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[id]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheEntry).state, true
}

// put caches state for id. A group larger than the whole budget is not
// cached: it would only evict everything else and then itself.
func (c *groupCache) put(id int64, state StateMap) {
	c.mu.Lock()
	epoch := c.epoch
	c.mu.Unlock()
	c.putAt(epoch, id, state)
}

// putAt is put for a load that began at epoch: a no-op if the cache was
// invalidated since.
func (c *groupCache) putAt(epoch uint64, id int64, state StateMap) {
	w := weight(state)
	if w > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	if el, ok := c.m[id]; ok {
		c.ll.MoveToFront(el)
		return
	}
	c.m[id] = c.ll.PushFront(&cacheEntry{id: id, state: state})
	c.size += w
	for c.size > c.max {
		el := c.ll.Back()
		e := el.Value.(*cacheEntry)
		c.ll.Remove(el)
		delete(c.m, e.id)
		c.size -= weight(e.state)
	}
}

// invalidate drops every cached group from id on and refuses the puts of
// loads that began before it.
func (c *groupCache) invalidate(from int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for id, el := range c.m {
		if id >= from {
			c.size -= weight(el.Value.(*cacheEntry).state)
			c.ll.Remove(el)
			delete(c.m, id)
		}
	}
}

// reader is the groupSource of one load outside Commit: its puts are
// dropped if the cache was invalidated since it began, as what it read
// may predate the change.
func (c *groupCache) reader() groupSource {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &epochReader{c: c, epoch: c.epoch}
}

type epochReader struct {
	c     *groupCache
	epoch uint64
}

func (r *epochReader) get(id int64) (StateMap, bool) { return r.c.get(id) }

func (r *epochReader) put(id int64, state StateMap) { r.c.putAt(r.epoch, id, state) }

// len reports the number of cached groups and entries (for tests).
func (c *groupCache) len() (groups, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m), c.size
}

// groupSource is where state group maps are looked up and remembered while
// they are being loaded.
type groupSource interface {
	get(id int64) (StateMap, bool)
	put(id int64, state StateMap)
}

// overlay is the groupSource used inside Commit. Groups loaded or computed
// there may belong to the uncommitted transaction, so they are kept aside in
// pending and reach the shared cache only if the commit succeeds.
type overlay struct {
	shared  *groupCache
	pending map[int64]StateMap
}

func (o *overlay) get(id int64) (StateMap, bool) {
	if m, ok := o.pending[id]; ok {
		return m, true
	}
	return o.shared.get(id)
}

func (o *overlay) put(id int64, state StateMap) {
	if o.pending == nil {
		o.pending = map[int64]StateMap{}
	}
	o.pending[id] = state
}

// publish moves pending groups into the shared cache after a commit.
func (o *overlay) publish() {
	for id, m := range o.pending {
		o.shared.put(id, m)
	}
	o.pending = nil
}
