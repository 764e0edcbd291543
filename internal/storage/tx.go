package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Tx is a transaction over the tables outside the event graph: accounts,
// devices, keys, account data and the like. Their owners (the signalling
// packages) write their own queries with "?" placeholders; Tx rewrites them
// for the backend. Statements are prepared per call: these tables see far
// fewer writes than the event graph, and the drivers cache plans well
// enough for them.
//
// Rows written through [DB.Update] that readers consume as a stream carry
// a position from [Tx.NextPos]: one counter, the aux stream, shared by
// every such table, allocated under the same serialisation as event stream
// positions, so that a reader that has seen aux position N never later
// finds a committed row at or below N.
type Tx struct {
	tx    *sql.Tx
	db    *DB
	write bool
	// pos is the last aux position this transaction allocated (0: none).
	pos int64
}

// stmt returns query prepared on the transaction's connection, from the
// connection's statement cache: parsing the SQL again for every call
// costs about as much as running a small query.
func (t *Tx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	c := t.db.rstmts
	if t.write {
		c = t.db.wstmts
	}
	return c.fixed(ctx, t.tx, query)
}

// Exec runs a statement that returns no rows.
func (t *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

// Query runs a query that returns rows.
func (t *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

// QueryRow runs a query that returns at most one row.
func (t *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := t.stmt(ctx, query)
	if err != nil {
		// Let the driver report the same error through the Row.
		return t.tx.QueryRowContext(ctx, t.db.d.rebind(query), args...)
	}
	return s.QueryRowContext(ctx, args...)
}

// Strings runs a query of one text column and returns its values in
// order; never nil, so an empty result encodes as a JSON [].
func (t *Tx) Strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := t.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Backend reports "sqlite" or "postgres", for the rare query that differs.
func (t *Tx) Backend() string { return t.db.d.name }

// NextPos allocates the next aux stream position. Only an Update
// transaction may allocate; the position becomes visible through
// [DB.AuxPos] when the transaction commits.
func (t *Tx) NextPos() int64 {
	if !t.write {
		panic("storage: NextPos in a read-only transaction")
	}
	if t.pos == 0 {
		t.pos = t.db.lastAux
	}
	t.pos++
	return t.pos
}

// Update runs fn in one write transaction, serialised with every other
// write (Commit included). fn must not do network I/O: the whole server's
// writes wait for it. If fn returns an error the transaction rolls back and
// Update returns that error unchanged, so callers can branch on their own
// error values.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	select {
	case db.writeSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("storage: update: %w", ctx.Err())
	}
	defer func() { <-db.writeSem }()
	if db.closed {
		return errClosed
	}
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage: begin: %w", err)
	}
	t := &Tx{tx: sqlTx, db: db, write: true}
	if err := fn(t); err != nil {
		_ = sqlTx.Rollback()
		db.wstmts.warm(ctx)
		return err
	}
	if t.pos != 0 {
		if _, err := sqlTx.ExecContext(ctx, db.d.rebind(`UPDATE aux_stream SET pos = ?`), t.pos); err != nil {
			_ = sqlTx.Rollback()
			return fmt.Errorf("storage: advance aux stream: %w", err)
		}
	}
	defer db.wstmts.warm(ctx)
	if err := sqlTx.Commit(); err != nil {
		// A failed COMMIT may still have reached the disk: never hand the
		// positions out again.
		if t.pos != 0 {
			db.lastAux = t.pos
		}
		return fmt.Errorf("storage: commit: %w", err)
	}
	if t.pos != 0 {
		db.lastAux = t.pos
		db.auxPos.Store(t.pos)
	}
	return nil
}

// Exec runs one statement in its own write transaction (Update with a
// single Tx.Exec).
func (db *DB) Exec(ctx context.Context, query string, args ...any) error {
	return db.Update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, query, args...)
		return err
	})
}

// View runs fn in a read-only transaction with one consistent snapshot.
func (db *DB) View(ctx context.Context, fn func(*Tx) error) error {
	sqlTx, err := db.read.BeginTx(ctx, &db.d.readTx)
	if err != nil {
		return fmt.Errorf("storage: begin read: %w", err)
	}
	defer db.rstmts.warm(ctx)
	defer sqlTx.Rollback() //nolint:errcheck // read-only
	return fn(&Tx{tx: sqlTx, db: db})
}

// AuxPos is the highest committed aux stream position.
func (db *DB) AuxPos() int64 { return db.auxPos.Load() }
