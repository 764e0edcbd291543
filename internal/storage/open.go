package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	_ "modernc.org/sqlite"             // registers driver "sqlite"
)

// groupCacheEntries bounds the state group cache: about 200 bytes per
// entry, so some 40 MB at most.
const groupCacheEntries = 200_000

// DB is the event graph store. It is safe for concurrent use; Commits are
// serialised (see the package documentation for why).
type DB struct {
	d      *dialect
	write  *sql.DB // one connection: every Commit and the migrations
	read   *sql.DB // a pool for everything else
	wstmts *stmtCache
	rstmts *stmtCache
	groups *groupCache

	// writeSem is a one-slot semaphore held by Commit and by Close; a
	// channel rather than a mutex so that waiting honours ctx.
	writeSem chan struct{}
	// closed, lastPos and lastGroup are guarded by writeSem. lastPos and
	// lastGroup are the last stream position and state group ID handed
	// out; they only grow, even when a commit fails, because a failed
	// COMMIT may still have reached the disk.
	closed    bool
	lastPos   int64
	lastGroup int64
	// firstPos is the lowest stream position handed out to backfilled
	// history (0 before any); it only shrinks. Also guarded by writeSem.
	firstPos int64
	// lastAux is the last aux stream position handed out (see Tx.NextPos).
	lastAux int64
	// rooms and recent are Commit's caches of committed data, also
	// guarded by writeSem (see writecache.go).
	rooms  map[string]roomMeta
	recent recentGroups

	// maxPos is the highest committed stream position, readable without
	// waiting for an in-flight Commit.
	maxPos atomic.Int64
	// auxPos is the highest committed aux stream position.
	auxPos atomic.Int64

	// group merges concurrent Commits into shared transactions.
	group grouper

	// ckptStop and ckptDone run the SQLite checkpoint loop (nil for
	// PostgreSQL); lastCkptAux is the loop's own note of the aux
	// position it last saw.
	ckptStop, ckptDone chan struct{}
	lastCkptAux        int64

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) and migrates the store named by dsn:
//
//	""                                  SQLite file <dataDir>/plexus.db
//	"postgres://..." "postgresql://..." PostgreSQL
//	"sqlite:/path/file.db"              SQLite at that path
//	"file:..."                          SQLite URI, passed to the driver as is
func Open(ctx context.Context, dsn string, dataDir string) (*DB, error) {
	t, err := parseDSN(dsn, dataDir)
	if err != nil {
		return nil, err
	}
	if t.mkdir != "" {
		if err := os.MkdirAll(t.mkdir, 0o700); err != nil {
			return nil, fmt.Errorf("storage: create data dir: %w", err)
		}
	}
	db := &DB{
		d:        t.d,
		groups:   newGroupCache(groupCacheEntries),
		writeSem: make(chan struct{}, 1),
		rooms:    map[string]roomMeta{},
		recent:   recentGroups{max: recentGroupsMax},
	}
	db.group.db = db
	if err := db.open(ctx, t); err != nil {
		db.closeHandles()
		return nil, err
	}
	return db, nil
}

func (db *DB) open(ctx context.Context, t target) error {
	var err error
	// The writer opens first: on SQLite it is the connection that switches
	// the file to WAL, which readers then find already set.
	if db.write, err = sql.Open(t.d.driver, t.writeDSN); err != nil {
		return fmt.Errorf("storage: open %s: %w", t.d.name, err)
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("storage: connect %s: %w", t.d.name, err)
	}
	if err := migrate(ctx, db.write, t.d, migrationFS); err != nil {
		return err
	}
	if db.read, err = sql.Open(t.d.driver, t.readDSN); err != nil {
		return fmt.Errorf("storage: open %s: %w", t.d.name, err)
	}
	readers := max(4, 2*runtime.GOMAXPROCS(0))
	db.read.SetMaxOpenConns(readers)
	db.read.SetMaxIdleConns(readers)
	db.wstmts = newStmtCache(db.write, t.d)
	db.rstmts = newStmtCache(db.read, t.d)

	row := db.write.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(MAX(stream_pos), 0) FROM events),
		(SELECT COALESCE(MAX(id), 0) FROM state_groups),
		(SELECT COALESCE(MIN(stream_pos), 0) FROM events)`)
	if err := row.Scan(&db.lastPos, &db.lastGroup, &db.firstPos); err != nil {
		return fmt.Errorf("storage: read counters: %w", err)
	}
	db.firstPos = min(db.firstPos, 0)
	db.maxPos.Store(db.lastPos)
	if err := db.write.QueryRowContext(ctx, `SELECT pos FROM aux_stream`).Scan(&db.lastAux); err != nil {
		return fmt.Errorf("storage: read aux stream: %w", err)
	}
	db.auxPos.Store(db.lastAux)
	if t.d == sqliteDialect {
		db.ckptStop, db.ckptDone = make(chan struct{}), make(chan struct{})
		go db.checkpointLoop()
	}
	return nil
}

// Close waits for an in-flight Commit, then closes the store. Calling it
// again returns the first call's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		if db.ckptStop != nil {
			close(db.ckptStop)
			<-db.ckptDone
		}
		db.writeSem <- struct{}{}
		db.closed = true
		<-db.writeSem
		if db.d.onClose != "" {
			// Best effort: a failure here loses nothing.
			_, _ = db.write.Exec(db.d.onClose)
		}
		db.closeErr = db.closeHandles()
	})
	return db.closeErr
}

func (db *DB) closeHandles() error {
	var errs []error
	for _, c := range []*stmtCache{db.wstmts, db.rstmts} {
		if c != nil {
			errs = append(errs, c.close())
		}
	}
	for _, h := range []*sql.DB{db.read, db.write} {
		if h != nil {
			errs = append(errs, h.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// Backend reports "sqlite" or "postgres".
func (db *DB) Backend() string { return db.d.name }

// target is a parsed DSN: which backend, and the driver DSNs for the writer
// and the reader pool.
type target struct {
	d        *dialect
	writeDSN string
	readDSN  string
	mkdir    string // directory to create first, if any
}

// sqliteWriterParams configure the one writer connection. WAL lets readers
// run beside the writer; synchronous=NORMAL in WAL mode loses at most the
// last commits on power failure, never consistency; BEGIN IMMEDIATE takes
// the write lock up front so a transaction never fails half-way on
// SQLITE_BUSY; busy_timeout covers another process holding the lock;
// automatic checkpoints are off because checkpoint.go runs them. The
// 32 MB page cache (default 2 MB) keeps the event ID index, where inserts
// land at random, in memory for longer.
const sqliteWriterParams = "_txlock=immediate" +
	"&_pragma=busy_timeout(10000)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(NORMAL)" +
	"&_pragma=foreign_keys(1)" +
	"&_pragma=cache_size(-32000)" +
	// checkpoint.go checkpoints the WAL off the commit path.
	"&_pragma=wal_autocheckpoint(0)"

// sqliteReaderParams configure the read pool; query_only guards against a
// write slipping onto a reader and racing the writer for the lock.
const sqliteReaderParams = "_pragma=busy_timeout(10000)" +
	"&_pragma=foreign_keys(1)" +
	"&_pragma=query_only(1)"

func parseDSN(dsn, dataDir string) (target, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		dsn = withoutJIT(dsn)
		return target{d: postgresDialect, writeDSN: dsn, readDSN: dsn}, nil
	case dsn == "":
		if dataDir == "" {
			return target{}, errors.New("storage: no DSN and no data directory")
		}
		t := sqliteTarget("file:" + escapeSQLitePath(filepath.Join(dataDir, "plexus.db")))
		t.mkdir = dataDir
		return t, nil
	case strings.HasPrefix(dsn, "sqlite:"):
		p := strings.TrimPrefix(dsn, "sqlite:")
		// Accept sqlite:///abs/path as well as sqlite:/abs/path.
		if strings.HasPrefix(p, "///") {
			p = p[2:]
		}
		if p == "" {
			return target{}, errors.New("storage: sqlite: DSN has no path")
		}
		return sqliteTarget("file:" + escapeSQLitePath(p)), nil
	case strings.HasPrefix(dsn, "file:"):
		return sqliteTarget(dsn), nil
	}
	return target{}, fmt.Errorf("storage: unsupported DSN %q (want a postgres://, postgresql://, sqlite: or file: prefix)", redact(dsn))
}

func sqliteTarget(uri string) target {
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return target{
		d:        sqliteDialect,
		writeDSN: uri + sep + sqliteWriterParams,
		readDSN:  uri + sep + sqliteReaderParams,
	}
}

// escapeSQLitePath escapes the characters that SQLite's URI parser would
// otherwise take as query, fragment or escape markers.
func escapeSQLitePath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}

// redact hides anything that looks like a password before a DSN reaches an
// error message.
func redact(dsn string) string {
	if at := strings.LastIndex(dsn, "@"); at >= 0 {
		if scheme := strings.Index(dsn, "://"); scheme >= 0 && scheme < at {
			return dsn[:scheme+3] + "***" + dsn[at:]
		}
	}
	return dsn
}

// withoutJIT turns PostgreSQL's JIT compiler off for our sessions unless
// the DSN sets jit itself. Our queries are short lookups by key; on tables
// not yet analysed the planner's row estimates for the recursive auth-chain
// walk cross the JIT thresholds, and compiling costs ~100 ms a query
// against a few milliseconds of work (a send_join for a 10,000-member room
// took 5.5 s with JIT and well under one without). pgx passes unknown DSN
// parameters to the server as run-time settings.
func withoutJIT(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // parse errors are reported by the driver, with the DSN redacted
	}
	q := u.Query()
	if q.Has("jit") {
		return dsn
	}
	q.Set("jit", "off")
	u.RawQuery = q.Encode()
	return u.String()
}
