package difftest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// Size of the run: graphsPerVersion rooms of about eventsPerGraph events
// for each room version (half as many rooms under the race detector).
// It runs in go test ./... by default, in well under a minute on two
// cores, with or without -race.
const (
	graphsPerVersion = 100
	eventsPerGraph   = 60
)

func graphs() uint64 {
	if raceEnabled {
		return graphsPerVersion / 2
	}
	return graphsPerVersion
}

// TestDifferential generates rooms and compares Plexus with
// gomatrixserverlib on every event and every merge. A failure names the
// seed; rerun one graph with
//
//	go test ./rooms/internal/difftest -run 'TestDifferential/v11/seed=17$' -v
func TestDifferential(t *testing.T) {
	total := newTally()
	t.Cleanup(func() {
		total.log(t)
		// The generator must keep exercising what it is meant to: merges,
		// rejections and the signature and auth_events variants.
		for _, kind := range []string{"stateres", "auth/state-before", "auth/auth-events-extra",
			"auth/auth-events-duplicate", "auth/auth-events-missing-create", "signatures/missing-co-signature",
			"redaction/junk-keys", "twin/event-id"} {
			if total.counts[kind] == 0 && !t.Failed() {
				t.Errorf("no %s comparisons: the generator no longer exercises them", kind)
			}
		}
		if total.rejected < total.events/20 {
			t.Errorf("only %d of %d events rejected: the generator no longer makes invalid events", total.rejected, total.events)
		}
	})
	for _, id := range []string{"10", "11"} {
		v := pdu.MustVersion(id)
		t.Run("v"+id, func(t *testing.T) {
			for seed := uint64(1); seed <= graphs(); seed++ {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					t.Parallel()
					c := newChecker(t, seed, v)
					g := generate(seed, v, c, eventsPerGraph)
					total.merge(c, len(g.rejected))
				})
			}
		})
	}
}

// TestCanonicalJSON compares cjson.Canonicalize with
// gomatrixserverlib.CanonicalJSON on random values written loosely
// (shuffled keys, whitespace, \u escapes, surrogate pairs, escaped
// slashes).
func TestCanonicalJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		v := randomJSON(rng, 4)
		in := looseJSON(rng, v)
		mine, err := cjson.Canonicalize([]byte(in))
		if err != nil {
			t.Fatalf("cjson refused valid input %q: %v", in, err)
		}
		if want := cjson.Marshal(v); string(mine) != string(want) {
			t.Errorf("cjson.Canonicalize(%q) = %s, want %s", in, mine, want)
		}
		theirs, err := gmsl.CanonicalJSON([]byte(in))
		if err != nil {
			t.Errorf("gomatrixserverlib refused %q: %v", in, err)
			continue
		}
		if string(mine) != string(theirs) {
			t.Errorf("canonical JSON of %q:\n  plexus:            %s\n  gomatrixserverlib: %s", in, mine, theirs)
		}
	}
}

// TestGeneratorDeterministic checks that a seed names one graph, so a
// failure's seed reproduces it.
func TestGeneratorDeterministic(t *testing.T) {
	v := pdu.MustVersion("11")
	ids := func() []pdu.EventID {
		g := generate(7, v, newChecker(t, 7, v), eventsPerGraph)
		out := make([]pdu.EventID, len(g.all))
		for i, e := range g.all {
			out[i] = e.ID()
		}
		return out
	}
	a, b := ids(), ids()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("seed 7 made two different graphs:\n%v\n%v", a, b)
	}
}
