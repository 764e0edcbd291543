package keys

import (
	"context"
	"fmt"
	"testing"

	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

func (e *env) token() string { return stream.Token{Events: 7, Aux: e.db.AuxPos(), Typing: 2}.String() }

// changes calls GET /keys/changes.
func (e *env) changes(token, from, to string) []string {
	e.t.Helper()
	var c struct {
		Changed []string `json:"changed"`
		Left    []string `json:"left"`
	}
	path := "/_matrix/client/v3/keys/changes?from=" + from
	if to != "" {
		path += "&to=" + to
	}
	e.ok("GET", path, token, nil, &c)
	if c.Changed == nil || c.Left == nil {
		e.t.Fatalf("changed and left must be arrays: %+v", c)
	}
	return c.Changed
}

func TestDeviceListChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		t0 := e.token()
		subBob, subCarol := e.hub.Subscribe(bob), e.hub.Subscribe(carol)
		defer subBob.Close()
		defer subCarol.Close()

		kp := newKeyPair(t)
		dk := deviceKeysText(t, alice, "ALICE1", kp)
		e.ok("POST", pUpload, "alice1", `{"device_keys": `+string(dk)+`}`, nil)
		waitWake(t, subBob, "bob, who shares a room with alice")
		noWake(t, subCarol, "carol, who does not")
		t1 := e.token()

		// The same upload again is no change; one-time keys are none.
		e.ok("POST", pUpload, "alice1", `{"device_keys": `+string(dk)+`, "one_time_keys": {"a:b": "c"}}`, nil)
		noWake(t, subBob, "an unchanged upload")
		t2 := e.token()

		tests := []struct {
			name, token, from, to string
			want                  []string
		}{
			{"bob sees alice", "bob1", t0, t1, []string{alice}},
			{"alice sees herself", "alice1", t0, t1, []string{alice}},
			{"carol shares no room", "carol1", t0, t1, []string{}},
			{"nothing after t1", "bob1", t1, t2, []string{}},
			{"to defaults to now", "bob1", t0, "", []string{alice}},
			{"empty range", "bob1", t1, t0, []string{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := e.changes(tt.token, tt.from, tt.to); fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("changed = %v, want %v", got, tt.want)
				}
			})
		}

		// Deleting a device is a change too, and removes its keys.
		if err := e.k.DeleteDevice(ctx, alice, "ALICE1"); err != nil {
			t.Fatal(err)
		}
		waitWake(t, subBob, "a deleted device")
		from, _ := stream.ParseToken(t2)
		changed, left, err := e.k.DeviceListChanges(ctx, bob, from.Aux, e.db.AuxPos())
		if err != nil || fmt.Sprint(changed) != "["+alice+"]" || len(left) != 0 {
			t.Fatalf("DeviceListChanges = %v, %v, %v", changed, left, err)
		}
		var q struct {
			DeviceKeys map[string]map[string]any `json:"device_keys"`
		}
		e.ok("POST", pQuery, "bob1", `{"device_keys": {"@alice:test.local": []}}`, &q)
		if len(q.DeviceKeys[alice]) != 0 {
			t.Fatalf("deleted device still listed: %v", q.DeviceKeys)
		}
	})
}
