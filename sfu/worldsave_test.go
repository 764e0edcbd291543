package sfu_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/sfu/internal/sfutest"
)

// TestWorldSavedDuringCall: with a short WorldSaveInterval a world change
// reaches the WorldStore while the call is still running, not only when
// the room closes; a later change is saved too, and an unchanged world is
// not saved again.
func TestWorldSavedDuringCall(t *testing.T) {
	store := newMemWorld()
	const interval = 200 * time.Millisecond
	// EmptyTimeout is long: a save seen in this test cannot be the
	// room's closing save.
	h := newHarness(t, sfu.Config{WorldSaveInterval: interval, EmptyTimeout: time.Minute}, sfu.Deps{World: store})
	alice := h.connect("periodic", "alice", nil)
	bob := h.connect("periodic", "bob", nil)

	entries := func() map[string]json.RawMessage {
		snap, _, _, _ := store.saved("periodic")
		var s worldSnapshot
		if json.Unmarshal(snap, &s) != nil {
			return nil
		}
		out := map[string]json.RawMessage{}
		for k, e := range s.Entries {
			out[k] = e.Value
		}
		return out
	}
	inCall := func() {
		t.Helper()
		rooms := h.srv.Rooms()
		if len(rooms) != 1 || len(rooms[0].Participants) != 2 || alice.wasDisconnected() || bob.wasDisconnected() {
			t.Fatalf("the call ended early: rooms %+v", rooms)
		}
	}

	setWorld(t, alice, map[string]any{"door": "open"})
	sfutest.Await(t, 10*interval+5*time.Second, "alice's change saved during the call", func() bool {
		return string(entries()["door"]) == `"open"`
	})
	inCall()
	snap, ids, saves, _ := store.saved("periodic")
	checkSnapshot(t, snap, "alice", map[string]string{"door": `"open"`})
	if len(ids) != 2 {
		t.Errorf("SaveWorld identities %v, want the call's two participants", ids)
	}

	setWorld(t, bob, map[string]any{"lamp": true})
	sfutest.Await(t, 10*interval+5*time.Second, "bob's later change saved during the call", func() bool {
		e := entries()
		return string(e["lamp"]) == "true" && string(e["door"]) == `"open"`
	})
	inCall()
	_, _, after, _ := store.saved("periodic")
	if after != saves+1 {
		t.Errorf("%d saves for one change, want 1", after-saves)
	}

	// Five intervals with no change: no save.
	quiet := time.Now().Add(5 * interval)
	for time.Now().Before(quiet) {
		time.Sleep(interval / 4) // the span of quiet being observed, not synchronisation
	}
	if _, _, n, _ := store.saved("periodic"); n != after {
		t.Errorf("an unchanged world was saved %d more times", n-after)
	}
	inCall()
}
