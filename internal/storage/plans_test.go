package storage

import (
	"fmt"
	"strings"
	"testing"
)

// testQueryPlans checks that the state and auth walks stay index lookups on
// a room of some size: a table scan per step would make them cost the size
// of the room instead of the size of the chain. PostgreSQL is asked for the
// generic plan, which is the one a cached prepared statement ends up using.
func testQueryPlans(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	prev := c
	for i := range 24 {
		b := &Batch{RoomID: room}
		for j := range 64 {
			id := fmt.Sprintf("$plan%d_%d", i, j)
			b.Events = append(b.Events, PersistEvent{
				Record: stateRec(room, id, "m.room.member", id, int64(i*64+j+2), ids(prev), ids(c, prev)),
				State:  &StateSpec{BaseEvent: prev, Delta: StateMap{{"m.room.member", id}: id}},
			})
			prev = id
		}
		h.commit(b)
	}
	if _, err := h.db.write.ExecContext(h.ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	group, err := h.db.StateGroupOf(h.ctx, prev)
	if err != nil {
		t.Fatal(err)
	}
	queries := []struct {
		name  string
		query string
		arg   any
	}{
		{"auth chain", fmt.Sprintf(authChainQuery(h.db.d), "?"), prev},
		{"state group chain", groupChainQuery, group},
		{"state group entries", h.db.d.groupEntries, h.db.d.int64List([]int64{group, group - 1})},
	}
	for _, q := range queries {
		plan := h.plan(q.query, q.arg)
		for _, line := range plan {
			if scansTable(h.db.d, line) {
				t.Errorf("%s plan scans a table:\n%s", q.name, strings.Join(plan, "\n"))
				break
			}
		}
	}
}

// scansTable reports whether a plan line reads a whole table. Scanning the
// walk's own work table (chain, alias c) is the walk itself, and scanning
// the parameter list (json_each, a virtual table) is reading the input.
func scansTable(d *dialect, line string) bool {
	line = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(line), "->"))
	if d == postgresDialect {
		return strings.HasPrefix(line, "Seq Scan")
	}
	target, ok := strings.CutPrefix(line, "SCAN ")
	return ok && target != "chain" && target != "c" && !strings.Contains(target, "VIRTUAL TABLE")
}

// plan returns the query plan of query, one line per plan node.
func (h *harness) plan(query string, arg any) []string {
	h.tb.Helper()
	conn, err := h.db.read.Conn(h.ctx)
	if err != nil {
		h.tb.Fatal(err)
	}
	defer conn.Close()
	var explain string
	var args []any
	if h.db.d == postgresDialect {
		for _, s := range []string{
			"SET plan_cache_mode = force_generic_plan",
			"PREPARE plan_probe AS " + h.db.d.rebind(query),
		} {
			if _, err := conn.ExecContext(h.ctx, s); err != nil {
				h.tb.Fatalf("%s: %v", s, err)
			}
		}
		defer conn.ExecContext(h.ctx, "DEALLOCATE plan_probe; RESET plan_cache_mode") //nolint:errcheck
		lit := fmt.Sprint(arg)
		if ids, ok := arg.([]int64); ok {
			lit = strings.Trim(strings.ReplaceAll(fmt.Sprint(ids), " ", ","), "[]")
			lit = "{" + lit + "}"
		}
		explain = fmt.Sprintf("EXPLAIN EXECUTE plan_probe('%s')", lit)
	} else {
		explain, args = "EXPLAIN QUERY PLAN "+query, []any{arg}
	}
	rows, err := conn.QueryContext(h.ctx, explain, args...)
	if err != nil {
		h.tb.Fatalf("%s: %v", explain, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		// PostgreSQL: one text column; SQLite: id, parent, notused, detail.
		vals := make([]any, len(cols))
		var detail string
		for i := range vals {
			vals[i] = new(any)
		}
		vals[len(vals)-1] = &detail
		if err := rows.Scan(vals...); err != nil {
			h.tb.Fatal(err)
		}
		out = append(out, detail)
	}
	if err := rows.Err(); err != nil {
		h.tb.Fatal(err)
	}
	return out
}
