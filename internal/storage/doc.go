// Package storage is the persistent store for the room event graph: events,
// their auth edges, per-event state as delta-encoded state groups, each
// room's forward extremities and current state, and the prev events the server
// still lacks.
//
// One implementation over database/sql serves two backends: SQLite through
// modernc.org/sqlite (the default, a file in the data directory) and
// PostgreSQL through pgx's database/sql driver. The few places where their
// SQL differs (placeholders, BLOB vs BYTEA, rowid tables, identifier
// collation, two planner-sensitive queries) live in one dialect value;
// everything else is shared. Schema migrations are embedded .sql files,
// applied in one transaction at Open and recorded in schema_migrations.
//
// # Writing
//
// All writes go through [DB.Commit], which applies one [Batch] in one
// transaction. Commits are serialised inside the process: each backend gets a
// single writer connection, and the stream position counter and state group
// IDs are allocated in memory under that serialisation. Serialising is what
// makes stream positions appear to readers in commit order, so a consumer
// that has read up to position N never later finds a committed event below N.
// The cost is that only one process may write a database at a time, which is
// how Plexus runs.
//
// Commit keeps the number of statements per batch small and independent of
// the batch size where it can (with PostgreSQL each statement is a round
// trip): rows go in as multi-row INSERTs whose row
// counts are powers of two, so each table needs at most a handful of prepared
// statements, which are cached on the writer connection. Being the only
// writer also lets Commit remember what it wrote (each room's depth and
// whether it has missing prevs, the state groups of recent events) instead
// of reading it back in the next batch.
//
// Commits of different rooms that arrive while another is being written are
// merged into one transaction (groupcommit.go): the group's rows go into
// each table with one statement, and only when a batch fails in a way that
// cannot be pinned on it alone is the group written again batch by batch,
// each in a savepoint, so that a bad batch never takes the others with it.
//
// # History
//
// A room joined over federation starts here at the join. History fetched
// later with /backfill is committed as a Backfill batch: its events take
// negative stream positions, below everything stored and descending with
// each batch, so stream order still runs oldest to newest for /messages
// while the readers that tail the stream upwards (/sync, the federation
// sender) never meet them. backward_extremities records where each room's
// stored history ends.
//
// # State
//
// The state after each accepted event is a state group (a rejected event
// may have one too: the state before it, which it leaves unchanged). A
// group is stored as a delta on a previous group; when the delta chain would grow past
// maxDeltaChain the group is written as a full snapshot instead, so reading
// any group touches at most maxDeltaChain+1 groups. Events that do not change
// state share their predecessor's group. Decoded groups are immutable and
// kept in an LRU bounded by the number of state entries held.
//
// # Testing
//
// The conformance suite (conformance_test.go) runs every case against a
// fresh SQLite file, and against a freshly created PostgreSQL database when
// PLEXUS_TEST_POSTGRES is a postgres:// URL of a server it may create
// databases on. With PLEXUS_REQUIRE_POSTGRES=1 a missing or unreachable
// server fails the run instead of skipping. BenchmarkCommit and
// BenchmarkCommitState report events/s for both backends.
package storage
