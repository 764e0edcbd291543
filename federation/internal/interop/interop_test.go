package interop

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
)

// versions are the room versions both Plexus and this gomatrixserverlib
// know.
var versions = []string{"10", "11"}

// TestGomatrixserverlibChecksPlexus grows a room on Plexus in each room
// version and storage backend and has gomatrixserverlib check every event
// each Plexus server stored.
func TestGomatrixserverlibChecksPlexus(t *testing.T) {
	for _, v := range versions {
		if !slices.Contains(rooms.SupportedVersions(), v) {
			t.Fatalf("Plexus no longer supports room version %s", v)
		}
	}
	onBackends(t, func(t *testing.T, backend string) {
		for _, version := range versions {
			t.Run("v"+version, func(t *testing.T) { testChecks(t, backend, version) })
		}
	})
}

// onBackends runs f once per storage backend (PostgreSQL skips unless
// PLEXUS_TEST_POSTGRES is set, and fails under PLEXUS_REQUIRE_POSTGRES=1).
func onBackends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

func testChecks(t *testing.T, backend, version string) {
	ctx := context.Background()
	w := newWorld(backend)
	s := buildScenario(t, w, version)
	if s.refused == 0 {
		t.Fatal("the scenario had no local event refused")
	}
	for _, p := range []*plexusServer{s.hs1, s.hs2} {
		c := newChecker(w, version, p, s.hs1, s.hs2)
		got, err := c.checkRoom(ctx, s.room)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		for _, f := range c.findings {
			t.Error(f)
		}
		t.Logf("%s: %d events checked; comparisons: %s", p.name, len(got), summary(c.counts))
		if p != s.hs1 {
			continue
		}
		// Plexus recorded what the scenario expects, so the checks above
		// covered accepted, rejected, soft-failed and redacted events.
		for id, want := range s.want {
			if got[id] != want {
				t.Errorf("hs1: event %s: stored as %q, scenario expects %q", id, got[id], want)
			}
		}
		for id := range got {
			if _, ok := s.want[id]; !ok {
				t.Errorf("hs1: stored event %s the scenario did not make", id)
			}
		}
		for _, id := range s.redacted {
			if got[id] != accepted {
				t.Errorf("hs1: redaction target %s stored as %q", id, got[id])
			}
		}
		for kind, min := range map[string]int{"auth/rejected": 3, "soft-fail": 5, "auth-selection": 15, "signatures/keyring": 20} {
			if c.counts[kind] < min {
				t.Errorf("hs1: only %d %q comparisons, want at least %d", c.counts[kind], kind, min)
			}
		}
		if n := c.counts["auth/state-before-unknown"]; n != 0 {
			t.Errorf("hs1: the state before %d events was not checked", n)
		}
	}
}

func summary(counts map[string]int) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&b, "%s=%d ", k, counts[k])
	}
	return strings.TrimSpace(b.String())
}

// TestCheckerFindsPlantedBugs shows the checker is not blind: each
// mistake Plexus could make, planted in a copy of a stored event, is
// reported.
func TestCheckerFindsPlantedBugs(t *testing.T) {
	ctx := context.Background()
	w := newWorld(storagetest.SQLite)
	s := buildScenario(t, w, "11")
	recs, err := s.hs1.store.EventsSince(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	find := func(pred func(r *storage.EventRecord) bool) *storage.EventRecord {
		t.Helper()
		for _, r := range recs {
			if pred(r) {
				c := *r
				c.AuthEvents = slices.Clone(r.AuthEvents)
				return &c
			}
		}
		t.Fatal("no stored event fits the planted bug")
		return nil
	}
	isLocal := func(r *storage.EventRecord) bool { return strings.HasSuffix(senderOf(t, r), ":hs1") }
	message := func(r *storage.EventRecord) bool {
		return r.Type == "m.room.message" && isLocal(r) && s.want[r.EventID] == accepted
	}
	tests := []struct {
		name  string
		plant func() *storage.EventRecord
	}{
		{"rejected event recorded as accepted", func() *storage.EventRecord {
			r := find(func(r *storage.EventRecord) bool { return r.Rejected != "" })
			r.Rejected = ""
			return r
		}},
		{"allowed event recorded as rejected", func() *storage.EventRecord {
			r := find(message)
			r.Rejected = "planted"
			return r
		}},
		{"soft-failed event recorded as accepted", func() *storage.EventRecord {
			r := find(func(r *storage.EventRecord) bool { return r.SoftFailed })
			r.SoftFailed = false
			return r
		}},
		{"local event soft-failed", func() *storage.EventRecord {
			r := find(message)
			r.SoftFailed = true
			return r
		}},
		{"wrong event ID", func() *storage.EventRecord {
			r := find(message)
			r.EventID = "$" + strings.Repeat("A", 43)
			return r
		}},
		{"bad signature", func() *storage.EventRecord {
			r := find(message)
			r.JSON = replaceSignature(t, r.JSON)
			return r
		}},
		{"content changed after hashing", func() *storage.EventRecord {
			r := find(message)
			r.JSON = tamperContent(t, r.JSON)
			return r
		}},
		{"extra auth event selected", func() *storage.EventRecord {
			r := find(message)
			info, err := s.hs1.store.Room(ctx, string(s.room))
			if err != nil {
				t.Fatal(err)
			}
			r.AuthEvents = append(r.AuthEvents, info.Current[storage.StateKey{Type: "m.room.join_rules"}])
			return r
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.plant()
			c := newChecker(w, "11", s.hs1, s.hs1, s.hs2)
			got := c.checkEvent(ctx, r)
			want, known := s.want[r.EventID]
			if len(c.findings) == 0 && (!known || got == want) {
				t.Errorf("planted bug went unnoticed in %s", r.JSON)
			}
		})
	}
}

func senderOf(t testing.TB, r *storage.EventRecord) string {
	t.Helper()
	var ev struct {
		Sender string `json:"sender"`
	}
	if err := json.Unmarshal(r.JSON, &ev); err != nil {
		t.Fatal(err)
	}
	return ev.Sender
}

// replaceSignature replaces every signature of an event with one made by
// a key nobody published, under the same key IDs.
func replaceSignature(t testing.TB, data []byte) []byte {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	var sigs map[string]map[string]string
	if err := json.Unmarshal(obj["signatures"], &sigs); err != nil {
		t.Fatal(err)
	}
	forged := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	for server, byKey := range sigs {
		for keyID := range byKey {
			byKey[keyID] = base64.RawStdEncoding.EncodeToString(ed25519.Sign(forged, []byte(server+keyID)))
		}
	}
	raw, err := json.Marshal(sigs)
	if err != nil {
		t.Fatal(err)
	}
	obj["signatures"] = raw
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := gmsl.CanonicalJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	return canon
}
