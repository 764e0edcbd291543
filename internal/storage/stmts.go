package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// maxChunkRows caps the rows of one multi-row statement. Row counts are
// powers of two up to this cap (1, 2, 4, ... 128), so a statement shape is
// prepared at most eight times however batch sizes vary.
const maxChunkRows = 128

// maxCachedStmts bounds how many statements first met inside a
// transaction are kept for later: query shapes are fixed in the code (IN
// lists come in a few sizes), so this is far above what a running server
// needs; it only guards against a caller building SQL from values, whose
// statements then live for their transaction only.
const maxCachedStmts = 4096

// stmtKey names a cached statement: text is the full SQL for fixed
// statements, or a template for sized ones, and n is the row or IN-list size.
type stmtKey struct {
	text string
	n    int
}

// stmtCache prepares each statement shape once per *sql.DB; database/sql
// then keeps one driver statement per connection, so SQLite parses and plans
// and PostgreSQL receives a Parse only once per connection and shape.
//
// A miss inside a transaction cannot prepare on the pool: the writer pool
// has one connection and the transaction holds it, so db.Prepare would wait
// forever. Such a miss prepares on the transaction for that one use and
// queues the shape; warm prepares queued shapes once no connection is held.
type stmtCache struct {
	db *sql.DB
	d  *dialect

	mu      sync.Mutex // guards m, pending and closed
	m       map[stmtKey]*sql.Stmt
	pending map[stmtKey]string // shapes missed inside a transaction -> rebound SQL
	closed  bool
}

func newStmtCache(db *sql.DB, d *dialect) *stmtCache {
	return &stmtCache{db: db, d: d, m: map[stmtKey]*sql.Stmt{}, pending: map[stmtKey]string{}}
}

// get returns the statement for key, usable in tx when tx is non-nil,
// building its SQL with build on a miss.
func (c *stmtCache) get(ctx context.Context, tx *sql.Tx, key stmtKey, build func() string) (*sql.Stmt, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	s, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		if tx != nil {
			return tx.StmtContext(ctx, s), nil
		}
		return s, nil
	}
	q := c.d.rebind(build())
	if tx != nil {
		c.mu.Lock()
		if len(c.m)+len(c.pending) < maxCachedStmts {
			c.pending[key] = q
		}
		c.mu.Unlock()
		s, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("storage: prepare %q: %w", firstLine(q), err)
		}
		return s, nil
	}
	s, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("storage: prepare %q: %w", firstLine(q), err)
	}
	return c.store(key, s), nil
}

// store caches s under key unless another caller got there first, and
// returns the cached statement.
func (c *stmtCache) store(key stmtKey, s *sql.Stmt) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		s.Close() // later use reports "statement is closed"
		return s
	}
	if old, ok := c.m[key]; ok {
		s.Close()
		return old
	}
	c.m[key] = s
	return s
}

// warm prepares the shapes that missed inside transactions. The caller must
// hold no connection of c.db. Errors are dropped: the shape simply misses
// again next time.
func (c *stmtCache) warm(ctx context.Context) {
	c.mu.Lock()
	todo := c.pending
	if len(todo) == 0 {
		c.mu.Unlock()
		return
	}
	c.pending = map[stmtKey]string{}
	c.mu.Unlock()
	for key, q := range todo {
		s, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.store(key, s)
	}
}

// fixed returns the prepared form of a constant query.
func (c *stmtCache) fixed(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	return c.get(ctx, tx, stmtKey{text: query}, func() string { return query })
}

// in returns query (which has one "%s" where an IN list of n placeholders
// goes) prepared for n values; n must come from inSize.
func (c *stmtCache) in(ctx context.Context, tx *sql.Tx, query string, n int) (*sql.Stmt, error) {
	return c.get(ctx, tx, stmtKey{text: query, n: n}, func() string {
		return fmt.Sprintf(query, placeholders(n))
	})
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for _, s := range c.m {
		errs = append(errs, s.Close())
	}
	c.m = nil
	return errors.Join(errs...)
}

var errClosed = errors.New("storage: database is closed")

// placeholders returns "?, ?, ..., ?" with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// chunkRows is the largest power of two <= min(rows, cap).
func chunkRows(rows, cap int) int {
	n := 1
	for n*2 <= rows && n*2 <= cap {
		n *= 2
	}
	return n
}

// inSize rounds an IN-list length up to a power of two (at most
// maxChunkRows) so that list lengths share prepared statements; the caller
// pads the extra slots by repeating a value, which IN ignores.
func inSize(n int) int {
	s := 1
	for s < n && s < maxChunkRows {
		s *= 2
	}
	return s
}

// inArgs returns ids[off:off+take] padded to inSize(take) with copies of
// its last element, as args, plus take.
func inArgs[T any](ids []T, off int) (args []any, take int) {
	take = min(len(ids)-off, maxChunkRows)
	size := inSize(take)
	args = make([]any, size)
	for i := range size {
		args[i] = ids[off+min(i, take-1)]
	}
	return args, take
}

// bulkInsert is a multi-row INSERT for one table.
type bulkInsert struct {
	head string // "INSERT INTO t (a, b) VALUES "
	tail string // after the rows, e.g. " ON CONFLICT DO NOTHING"
	cols int
}

func (b *bulkInsert) build(rows int) string {
	row := "(" + placeholders(b.cols) + ")"
	var s strings.Builder
	s.Grow(len(b.head) + rows*(len(row)+2) + len(b.tail))
	s.WriteString(b.head)
	for i := range rows {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString(row)
	}
	s.WriteString(b.tail)
	return s.String()
}

// exec inserts len(args)/b.cols rows through tx, in chunks whose row counts
// are powers of two.
func (b *bulkInsert) exec(ctx context.Context, c *stmtCache, tx *sql.Tx, args []any) error {
	rows := len(args) / b.cols
	limit := min(maxChunkRows, c.d.maxParams/b.cols)
	for rows > 0 {
		n := chunkRows(rows, limit)
		s, err := c.get(ctx, tx, stmtKey{text: b.head, n: n}, func() string { return b.build(n) })
		if err != nil {
			return err
		}
		if _, err := s.ExecContext(ctx, args[:n*b.cols]...); err != nil {
			return fmt.Errorf("storage: %s(%d rows): %w", firstLine(b.head), n, err)
		}
		args = args[n*b.cols:]
		rows -= n
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}
