package rooms

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage"
)

// stateRecorder is a Listener that records the current state changes it
// hears.
type stateRecorder struct {
	mu      sync.Mutex // guards changes
	changes []StateChange
}

func (r *stateRecorder) EventsStored(RoomID, []*Stored) {}

func (r *stateRecorder) CurrentStateChanged(_ RoomID, cs []StateChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, cs...)
}

// take returns the changes heard since the last take, and forgets them.
func (r *stateRecorder) take() []StateChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.changes
	r.changes = nil
	return cs
}

// of returns the event IDs the changes set for one key, in order.
func changesOf(cs []StateChange, typ, stateKey string) []EventID {
	var ids []EventID
	for _, c := range cs {
		if c.Type == typ && c.StateKey == stateKey {
			ids = append(ids, c.EventID)
		}
	}
	return ids
}

// TestCurrentStateChanges delivers the fork's two branches to an observer
// in both orders. The reported changes, replayed, always give the stored
// current state. The topic that arrives second is accepted (neither
// rejected nor soft-failed) either way, but changes the current state,
// and is reported, only when state resolution lets it win. State
// resolution may also bring back an older event with no new event for
// its key (here the branch's message alone can do it, as resolution
// weighs the old topic against the first branch's); that is reported too.
func TestCurrentStateChanges(t *testing.T) {
	topic := stateKey("m.room.topic", "")
	for _, version := range SupportedVersions() {
		t.Run("v"+version, func(t *testing.T) {
			f := buildFork(t, newTestNet(), version)
			want := f.hs1.current(t, f.room)
			winner := EventID(want[topic])
			winBr, loseBr := f.bobBr, f.charBr
			if winner == f.charBr[1].ID() {
				winBr, loseBr = f.charBr, f.bobBr
			} else if winner != f.bobBr[1].ID() {
				t.Fatalf("resolved topic %s is neither branch's topic", winner)
			}
			loser := loseBr[1].ID()
			prefix := f.events[:slices.Index(f.events, f.bobBr[0])]
			for _, tc := range []struct {
				name          string
				first, second []*Event
			}{
				{"winner first", winBr, loseBr},
				{"loser first", loseBr, winBr},
			} {
				t.Run(tc.name, func(t *testing.T) {
					rec := &stateRecorder{}
					obs := f.net.serverWith(t, "observer", rec)
					if _, err := obs.svc.Begin(context.Background(), f.create.JSON()); err != nil {
						t.Fatal(err)
					}
					replayed := storage.StateMap{}
					// step admits evs and checks that the changes heard
					// replay to the stored current state; it returns the
					// topic changes.
					step := func(what string, evs []*Event) []EventID {
						t.Helper()
						for _, e := range evs {
							a, err := obs.svc.Admit(context.Background(), f.room, e.JSON())
							if err != nil {
								t.Fatalf("%s: admit %s: %v", what, e.ID(), err)
							}
							if a.Rejected != "" || a.SoftFailed || a.Outlier {
								t.Fatalf("%s: %s rejected %q soft-failed %v outlier %v, want accepted", what, e.ID(), a.Rejected, a.SoftFailed, a.Outlier)
							}
						}
						cs := rec.take()
						for _, c := range cs {
							k := stateKey(c.Type, c.StateKey)
							if c.EventID == "" {
								delete(replayed, k)
								continue
							}
							if c.Event == nil || c.Event.ID() != c.EventID {
								t.Fatalf("%s: change of %s %q without its event", what, c.Type, c.StateKey)
							}
							replayed[k] = string(c.EventID)
						}
						if got := obs.current(t, f.room); !reflect.DeepEqual(got, replayed) {
							t.Fatalf("%s: the changes replay to\n%v\nnot the current state\n%v", what, replayed, got)
						}
						return changesOf(cs, topic.Type, topic.StateKey)
					}
					step("setup", prefix)
					if got := step("first branch", tc.first); !reflect.DeepEqual(got, []EventID{tc.first[1].ID()}) {
						t.Fatalf("first branch: topic changes %v, want %s", got, tc.first[1].ID())
					}
					got := step("second branch", tc.second)
					if slices.Contains(got, loser) {
						t.Fatalf("second branch: topic changes %v report the losing topic %s", got, loser)
					}
					if tc.second[1].ID() == winner && (len(got) == 0 || got[len(got)-1] != winner) {
						t.Fatalf("second branch: topic changes %v, want the winner %s last", got, winner)
					}
					step("merge", []*Event{f.merge})
					if !reflect.DeepEqual(replayed, want) {
						t.Fatalf("current state differs from hs1:\n got %v\nwant %v", replayed, want)
					}
				})
			}
		})
	}
}
