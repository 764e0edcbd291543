package storage

import (
	"database/sql"
	"strconv"
	"strings"
)

// dialect holds everything that differs between the SQLite and PostgreSQL
// backends. Queries are written once with "?" placeholders and the
// INSERT ... ON CONFLICT forms that both engines share (SQLite >= 3.24), so
// what remains here is placeholders, column types, table options, and the
// two queries whose PostgreSQL form must steer its planner.
type dialect struct {
	name   string // what Backend reports
	driver string // database/sql driver name

	// numbered placeholders ($1, $2, ...) instead of "?".
	numbered bool

	// tokens are substituted into migration files: {{NAME}} -> value.
	tokens map[string]string

	// readTx is how multi-query reads get one consistent snapshot.
	readTx sql.TxOptions

	// migrateLock, if set, runs first in the migration transaction so that
	// two processes opening one database do not both apply a migration.
	migrateLock string

	// maxParams bounds the bind parameters in one statement.
	maxParams int

	// onClose, if set, runs on the writer just before Close.
	onClose string

	// authStep is the recursive step of the auth-chain walk (see
	// authChainQuery): the auth events of every event found so far.
	authStep string

	// groupEntries selects (group_id, type, state_key, event_id) for a
	// list of state groups passed as one parameter, encoded by int64List.
	// An IN list would do, but PostgreSQL then picks a plan from table
	// statistics, and while they lag (as they do while a big room's state
	// is first written) it reads the whole entry table.
	groupEntries string
	int64List    func([]int64) any
}

var sqliteDialect = &dialect{
	name:   "sqlite",
	driver: "sqlite",
	tokens: map[string]string{
		// INTEGER PRIMARY KEY (exactly) makes the column the rowid, so the
		// table itself is the index on it and appends stay at the b-tree end.
		"INT_PK": "INTEGER PRIMARY KEY",
		"BLOB":   "BLOB",
		"ID":     "TEXT", // SQLite compares TEXT bytewise by default
		// Tables whose whole content is their primary key are stored once,
		// as the key's b-tree, instead of a rowid table plus an index.
		"WITHOUT_ROWID": " WITHOUT ROWID",
	},
	// A deferred SQLite transaction takes its WAL snapshot at the first read
	// and keeps it, which is the consistency we need; isolation levels are
	// not configurable.
	readTx:    sql.TxOptions{ReadOnly: true},
	maxParams: 32766, // SQLITE_MAX_VARIABLE_NUMBER since 3.32
	// SQLite recommends this before closing a long-lived connection: it
	// refreshes planner statistics where they have drifted.
	onClose: "PRAGMA optimize",
	// SQLite runs joins as nested loops, so this is a primary-key search
	// per event.
	authStep: `SELECT a.auth_id FROM chain c JOIN event_auth_edges a ON a.event_id = c.id`,
	groupEntries: `SELECT e.group_id, e.type, e.state_key, e.event_id
		FROM json_each(?) g JOIN state_group_entries e ON e.group_id = g.value`,
	int64List: jsonInt64s,
}

var postgresDialect = &dialect{
	name:     "postgres",
	driver:   "pgx",
	numbered: true,
	tokens: map[string]string{
		"INT_PK": "BIGINT PRIMARY KEY",
		"BLOB":   "BYTEA",
		// Identifiers are opaque: compare them bytewise, which is both
		// correct and much cheaper than a locale collation in every index.
		"ID":            `TEXT COLLATE "C"`,
		"WITHOUT_ROWID": "",
	},
	// READ COMMITTED would let each statement of a read see a different
	// commit; REPEATABLE READ gives the whole read one snapshot.
	readTx:      sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	migrateLock: "SELECT pg_advisory_xact_lock(7170657875)", // arbitrary constant owned by plexus storage
	maxParams:   65535,
	// PostgreSQL may plan the plain join as a hash join over the whole
	// edge table, once per step: it guesses the work table's size and not
	// how often the step runs. A LATERAL subquery fenced with OFFSET 0
	// cannot be flattened into a join, so each step is an index lookup per
	// event found.
	authStep: `SELECT a.auth_id FROM chain c
		CROSS JOIN LATERAL (SELECT auth_id FROM event_auth_edges WHERE event_id = c.id OFFSET 0) a`,
	groupEntries: `SELECT g.id, e.type, e.state_key, e.event_id
		FROM unnest(?::bigint[]) AS g(id)
		CROSS JOIN LATERAL (SELECT type, state_key, event_id FROM state_group_entries
			WHERE group_id = g.id OFFSET 0) e`,
	// pgx binds a Go slice as an array parameter.
	int64List: func(ids []int64) any { return ids },
}

// rebind rewrites "?" placeholders for the dialect. Our queries never contain
// "?" inside string literals, so a plain scan is enough.
func (d *dialect) rebind(query string) string {
	if !d.numbered {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] != '?' {
			b.WriteByte(query[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// expand substitutes {{TOKEN}} markers in migration SQL.
func (d *dialect) expand(src string) string {
	for k, v := range d.tokens {
		src = strings.ReplaceAll(src, "{{"+k+"}}", v)
	}
	return src
}

// jsonInt64s encodes ids as a JSON array, for SQLite's json_each.
func jsonInt64s(ids []int64) any {
	b := make([]byte, 0, 2+len(ids)*8)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}
