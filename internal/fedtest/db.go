package fedtest

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"sort"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "modernc.org/sqlite"             // driver "sqlite"
)

// Graph is one server's copy of a room, read straight from its database:
// what the servers must agree on.
type Graph struct {
	// Prevs maps each event placed in the room (not an outlier, not
	// rejected) to its prev_events.
	Prevs map[string][]string
	// SoftFailed lists the placed events that were soft-failed.
	SoftFailed map[string]bool
	// Rejected maps rejected events to the reason.
	Rejected map[string]string
	// Outliers lists events stored without a place in the graph.
	Outliers map[string]bool
	// State is the current state, "type\x00state_key" -> event ID.
	State map[string]string
	// Extremities are the forward extremities, sorted.
	Extremities []string
}

// Has reports whether an event is stored at all, in any form.
func (g *Graph) Has(id string) bool {
	_, p := g.Prevs[id]
	_, r := g.Rejected[id]
	return p || r || g.Outliers[id]
}

// db opens a read-only handle on the server's database; the server may be
// running (SQLite in WAL mode lets readers in beside its writer).
func (s *Server) db(t testing.TB) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite", "file:"+filepath.Join(s.DataDir, "plexus.db")+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)"
	if s.dsn != "" {
		driver, dsn = "pgx", s.dsn
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// Graph reads the server's copy of a room.
func (s *Server) Graph(t testing.TB, roomID string) *Graph {
	t.Helper()
	db := s.db(t)
	defer db.Close()
	g := &Graph{Prevs: map[string][]string{}, SoftFailed: map[string]bool{}, Rejected: map[string]string{}, Outliers: map[string]bool{}, State: map[string]string{}}
	rows, err := db.Query(`SELECT event_id, prev_events, rejected, soft_failed, outlier FROM events WHERE room_id = $1`, roomID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, prevs, rejected string
		var soft, outlier bool
		if err := rows.Scan(&id, &prevs, &rejected, &soft, &outlier); err != nil {
			t.Fatal(err)
		}
		switch {
		case rejected != "":
			g.Rejected[id] = rejected
		case outlier:
			g.Outliers[id] = true
		default:
			var p []string
			if err := json.Unmarshal([]byte(prevs), &p); err != nil {
				t.Fatal(err)
			}
			g.Prevs[id] = p
			if soft {
				g.SoftFailed[id] = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	rows, err = db.Query(`SELECT type, state_key, event_id FROM current_state WHERE room_id = $1`, roomID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var typ, sk, id string
		if err := rows.Scan(&typ, &sk, &id); err != nil {
			t.Fatal(err)
		}
		g.State[typ+"\x00"+sk] = id
	}
	rows.Close()
	rows, err = db.Query(`SELECT event_id FROM room_extremities WHERE room_id = $1`, roomID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		g.Extremities = append(g.Extremities, id)
	}
	rows.Close()
	sort.Strings(g.Extremities)
	return g
}
