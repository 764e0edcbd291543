package storage

import (
	"context"
	"time"
)

// checkpointEvery is how often the SQLite WAL is checkpointed.
const checkpointEvery = 250 * time.Millisecond

// SQLite checkpoints its write-ahead log automatically at the end of the
// commit that takes it past 1,000 pages, and that commit then copies the
// log into the database before returning: a pause of tens of
// milliseconds on one commit in every few hundred, which every event
// waiting behind it shares (it was the whole p99 of message delivery).
// The writer therefore runs with wal_autocheckpoint(0), and this loop
// checkpoints from a reader connection instead, in PASSIVE mode, which
// never blocks the writer or readers: it copies what no reader still
// needs and leaves the rest for the next round.
func (db *DB) checkpointLoop() {
	defer close(db.ckptDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	last := db.maxPos.Load()
	for {
		select {
		case <-db.ckptStop:
			return
		case <-t.C:
		}
		// Nothing committed since the last round: nothing to copy.
		if pos := db.maxPos.Load(); pos == last && db.auxPos.Load() == db.lastCkptAux {
			continue
		} else {
			last = pos
			db.lastCkptAux = db.auxPos.Load()
		}
		db.checkpointRound()
	}
}

// restartFrames is the WAL length (in 4 KiB frames) past which a round
// also restarts the log.
const restartFrames = 4096

// checkpointRound copies the WAL into the database without blocking
// anyone. Under a steady stream of commits a passive checkpoint never
// quite catches up, and SQLite only rewinds the log once one has, so
// when the log passes restartFrames the round also holds off writers for
// a second passive pass: by then the first has copied all but the last
// moments' frames, so the pause is short.
func (db *DB) checkpointRound() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Best effort: a failed round is retried at the next tick, and
	// SQLite checkpoints at close in any case.
	var busy, logFrames, copied int
	if err := db.read.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied); err != nil || logFrames < restartFrames {
		return
	}
	select {
	case db.writeSem <- struct{}{}:
	case <-db.ckptStop:
		return
	}
	defer func() { <-db.writeSem }()
	if db.closed {
		return
	}
	// PASSIVE again, now with no writer running: it catches up with the
	// log (unless a reader still needs old frames) and the next commit
	// then rewinds it. RESTART would do the same but wait for readers,
	// stalling every commit behind a slow one.
	_, _ = db.write.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
}
