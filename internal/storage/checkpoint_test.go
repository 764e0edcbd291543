package storage

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckpointLoop checks that, with automatic checkpoints off, the
// loop copies the WAL into the database under a steady stream of
// commits, so that SQLite rewinds it.
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
	// The WAL header's checkpoint sequence number (bytes 12-15) goes up
	// each time SQLite rewinds the log, which it does only after a
	// checkpoint has copied all of it. With automatic checkpoints off it
	// would never move; the loop must make it move under steady writes.
	// (The file's size is no measure: it keeps its high-water mark.)
	seq := func() uint32 {
		b, err := os.ReadFile(wal)
		if err != nil || len(b) < 16 {
			return 0
		}
		return binary.BigEndian.Uint32(b[12:16])
	}
	write(500)
	first := seq()
	deadline := time.Now().Add(60 * time.Second)
	for seq() == first {
		if time.Now().After(deadline) {
			t.Fatalf("the WAL was never rewound (checkpoint sequence stays %d): checkpoints are not running", first)
		}
		write(200)
	}
	if err := db.read.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil || done == 0 && logFrames > 0 {
		t.Fatalf("checkpoint: busy=%d log=%d done=%d err=%v", busy, logFrames, done, err)
	}
}
