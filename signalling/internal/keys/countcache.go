package keys

import (
	"context"
	"sync"
)

// keyCounts caches each device's one-time key counts and unused fallback
// key types, which every /sync response carries: without it a busy room's
// members would each cost two queries per message delivered. Writers
// invalidate a device after their transaction ends; a reader stores what
// it read only if no invalidation happened since it started, so a value
// read before a commit can never outlive it.
type keyCounts struct {
	mu sync.Mutex // guards the fields below
	// entries holds the cached values; gens counts invalidations per
	// device (kept while the process runs: one int per device seen).
	entries map[deviceRef]countsEntry
	gens    map[deviceRef]uint64
}

type deviceRef struct{ user, device string }

type countsEntry struct {
	otk      map[string]int
	fallback []string
}

func newKeyCounts() *keyCounts {
	return &keyCounts{entries: map[deviceRef]countsEntry{}, gens: map[deviceRef]uint64{}}
}

// get returns the device's cached counts, reading them with load on a miss.
func (c *keyCounts) get(ctx context.Context, ref deviceRef, load func(context.Context) (countsEntry, error)) (countsEntry, error) {
	c.mu.Lock()
	e, ok := c.entries[ref]
	gen := c.gens[ref]
	c.mu.Unlock()
	if ok {
		return e, nil
	}
	e, err := load(ctx)
	if err != nil {
		return e, err
	}
	c.mu.Lock()
	if c.gens[ref] == gen {
		c.entries[ref] = e
	}
	c.mu.Unlock()
	return e, nil
}

// invalidate forgets a device's counts; call it after every transaction
// that may have changed them, whether it committed or not.
func (c *keyCounts) invalidate(user, device string) {
	ref := deviceRef{user, device}
	c.mu.Lock()
	delete(c.entries, ref)
	c.gens[ref]++
	c.mu.Unlock()
}
