package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckpointLoop checks that, with automatic checkpoints off, the
// loop copies the WAL into the database: the WAL stops growing because
// SQLite restarts it once a checkpoint has caught up.
func TestCheckpointLoop(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The reader pool may run checkpoints (query_only does not stop it).
	var busy, logFrames, done int
	if err := db.read.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil {
		t.Fatalf("checkpoint from a reader: %v", err)
	}
	write := func(n int) {
		for i := range n {
			if err := db.Update(ctx, func(tx *Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO users (user_id, created_ts) VALUES (?, ?)`, time.Now().String()+string(rune('a'+i%26)), i)
				tx.NextPos()
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wal := filepath.Join(dir, "plexus.db-wal")
	size := func() int64 {
		st, err := os.Stat(wal)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	// Without checkpoints 3,000 commits would grow the WAL to tens of
	// megabytes; with them it is restarted once it passes restartFrames,
	// so it stays near that size.
	deadline := time.Now().Add(30 * time.Second)
	write(500)
	first := size()
	for range 5 {
		write(500)
	}
	limit := int64(restartFrames+restartFrames/2) * 4120 // frames with their headers, and a round's slack
	if first > limit {
		limit = first
	}
	for size() > limit {
		if time.Now().After(deadline) {
			t.Fatalf("WAL grew from %d to %d bytes: checkpoints are not running", first, size())
		}
		write(1)
		time.Sleep(checkpointEvery) // give the loop a round; bounded by the deadline
	}
	if err := db.read.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil || done == 0 && logFrames > 0 {
		t.Fatalf("checkpoint: busy=%d log=%d done=%d err=%v", busy, logFrames, done, err)
	}
}
