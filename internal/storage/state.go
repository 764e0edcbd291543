package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
)

// maxDeltaChain bounds how many deltas separate a group from its snapshot,
// so loading any group reads at most maxDeltaChain+1 groups. Smaller means
// more snapshot copies on disk; larger means longer walks on cache misses.
const maxDeltaChain = 32

// StateAfter returns the state after a stored event that has a state group
// (not an outlier, nor a rejected event stored without state), or
// ErrNotFound. The map is the caller's to modify.
func (db *DB) StateAfter(ctx context.Context, eventID string) (StateMap, error) {
	g, err := db.StateGroupOf(ctx, eventID)
	if err != nil {
		return nil, err
	}
	m, err := db.loadGroup(ctx, db.rstmts, nil, db.groups.reader(), g)
	if err != nil {
		return nil, fmt.Errorf("storage: state after %s: %w", eventID, err)
	}
	return maps.Clone(m), nil
}

// StateGroupOf returns the state group holding the state after eventID. It
// returns ErrNotFound if the event is not stored or has no state group
// (outliers, rejected events stored without state). Equal groups mean
// equal state.
func (db *DB) StateGroupOf(ctx context.Context, eventID string) (int64, error) {
	s, err := db.rstmts.fixed(ctx, nil, `SELECT state_group FROM events WHERE event_id = ?`)
	if err != nil {
		return 0, err
	}
	var g int64
	err = s.QueryRowContext(ctx, eventID).Scan(&g)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && g == 0) {
		return 0, fmt.Errorf("storage: state group of %s: %w", eventID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("storage: state group of %s: %w", eventID, err)
	}
	return g, nil
}

// StateOfGroup returns the full state of a state group, or ErrNotFound. The
// map is the caller's to modify.
func (db *DB) StateOfGroup(ctx context.Context, groupID int64) (StateMap, error) {
	m, err := db.loadGroup(ctx, db.rstmts, nil, db.groups.reader(), groupID)
	if err != nil {
		return nil, fmt.Errorf("storage: state group %d: %w", groupID, err)
	}
	return maps.Clone(m), nil
}

// loadGroup returns the full state of group id, which the caller must not
// modify. It walks the delta chain from id towards its snapshot, stopping
// early at a group src already holds, then applies the deltas oldest first.
// Queries run in tx when it is non-nil (inside Commit, where the chain may
// include groups written by the same transaction) and on c's pool otherwise.
func (db *DB) loadGroup(ctx context.Context, c *stmtCache, tx *sql.Tx, src groupSource, id int64) (StateMap, error) {
	if m, ok := src.get(id); ok {
		return m, nil
	}
	chain, err := db.groupChain(ctx, c, tx, src, id)
	if err != nil {
		return nil, err
	}
	// chain[0] is id; the last element is either a snapshot or, if base is
	// non-nil, the delta applied directly on top of a cached group.
	var base StateMap
	if last := chain[len(chain)-1]; last.cached != nil {
		base = last.cached
		chain = chain[:len(chain)-1]
	}

	deltas := make(map[int64][]stateEntry, len(chain))
	ids := make([]int64, 0, len(chain))
	for _, g := range chain {
		ids = append(ids, g.id)
	}
	if err := db.groupEntries(ctx, c, tx, ids, deltas); err != nil {
		return nil, err
	}

	size := len(base)
	for _, g := range chain {
		size += len(deltas[g.id])
	}
	out := make(StateMap, size)
	maps.Copy(out, base)
	for i := len(chain) - 1; i >= 0; i-- {
		for _, e := range deltas[chain[i].id] {
			if e.eventID == "" {
				delete(out, e.key)
			} else {
				out[e.key] = e.eventID
			}
		}
	}
	src.put(id, out)
	return out, nil
}

type stateEntry struct {
	key     StateKey
	eventID string // "" = removed
}

// chainLink is one group on the way from a group to its snapshot.
type chainLink struct {
	id     int64
	cached StateMap // non-nil: src already holds this group's full state
}

// groupChainQuery follows prev_group links from one group. The step looks
// up the next link with a scalar subquery rather than a join: PostgreSQL
// plans a join here as a hash join over all of state_groups, repeated for
// every step, while a scalar subquery is always one primary-key lookup.
const groupChainQuery = `WITH RECURSIVE chain(id, prev_group) AS (
	SELECT id, prev_group FROM state_groups WHERE id = ?
	UNION ALL
	SELECT c.prev_group, (SELECT g.prev_group FROM state_groups g WHERE g.id = c.prev_group)
	FROM chain c WHERE c.prev_group IS NOT NULL
)
SELECT id, prev_group FROM chain`

// groupChain lists id and its ancestors up to its snapshot, or up to the
// first ancestor src holds (returned last, with cached set).
func (db *DB) groupChain(ctx context.Context, c *stmtCache, tx *sql.Tx, src groupSource, id int64) ([]chainLink, error) {
	s, err := c.fixed(ctx, tx, groupChainQuery)
	if err != nil {
		return nil, err
	}
	rows, err := s.QueryContext(ctx, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	// Rows of a recursive CTE come in no guaranteed order, so rebuild the
	// chain from the prev links.
	prev := map[int64]int64{}
	for rows.Next() {
		var g int64
		var p sql.NullInt64
		if err := rows.Scan(&g, &p); err != nil {
			return nil, err
		}
		prev[g] = p.Int64 // 0 = snapshot; group IDs start at 1
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if _, ok := prev[id]; !ok {
		return nil, ErrNotFound
	}
	var chain []chainLink
	for g := id; g != 0; g = prev[g] {
		if len(chain) > maxDeltaChain+1 {
			return nil, fmt.Errorf("state group %d: delta chain longer than %d", id, maxDeltaChain)
		}
		if g != id {
			if m, ok := src.get(g); ok {
				chain = append(chain, chainLink{id: g, cached: m})
				break
			}
		}
		if _, ok := prev[g]; !ok {
			return nil, fmt.Errorf("state group %d: ancestor %d missing", id, g)
		}
		chain = append(chain, chainLink{id: g})
	}
	return chain, nil
}

// groupEntries adds the entries of the groups ids to deltas. The groups are
// passed as one list parameter (see dialect.groupEntries) so that every
// group is an index lookup whatever the planner believes about the table.
func (db *DB) groupEntries(ctx context.Context, c *stmtCache, tx *sql.Tx, ids []int64, deltas map[int64][]stateEntry) error {
	s, err := c.fixed(ctx, tx, db.d.groupEntries)
	if err != nil {
		return err
	}
	rows, err := s.QueryContext(ctx, db.d.int64List(ids))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			g  int64
			e  stateEntry
			ev sql.NullString
		)
		if err := rows.Scan(&g, &e.key.Type, &e.key.StateKey, &ev); err != nil {
			return err
		}
		e.eventID = ev.String // "" when NULL: removed
		deltas[g] = append(deltas[g], e)
	}
	return rows.Err()
}

// eachChunk runs query (with one "%s" for an IN list) over ids in chunks,
// in tx when it is non-nil and on c's pool otherwise, calling scan for every
// row.
func eachChunk[T any](ctx context.Context, c *stmtCache, tx *sql.Tx, query string, ids []T, scan func(*sql.Rows) error) error {
	for off := 0; off < len(ids); {
		args, take := inArgs(ids, off)
		s, err := c.in(ctx, tx, query, len(args))
		if err != nil {
			return err
		}
		rows, err := s.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		off += take
	}
	return nil
}
