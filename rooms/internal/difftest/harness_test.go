package difftest

import (
	"maps"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
	"github.com/plexus-chat/plexus/rooms/internal/stateres"
)

// recorder counts the failures a checker reports instead of failing.
type recorder struct {
	testing.TB
	errors int
}

func (r *recorder) Errorf(string, ...any) { r.errors++ }
func (r *recorder) Logf(string, ...any)   {}

// TestHarnessCatchesBugs plants a bug in each Plexus component the
// differential test covers and checks that the comparison reports it,
// so that a silent harness cannot pass for agreement.
func TestHarnessCatchesBugs(t *testing.T) {
	v := pdu.MustVersion("11")
	tests := []struct {
		name  string
		plant func(p *plexus)
	}{
		{"auth ignores the kick level", func(p *plexus) {
			p.allowed = func(e *pdu.Event, s auth.StateGetter) error {
				if e.Type() == pdu.TypeMember && e.Membership() == "leave" && !e.StateKeyIs(string(e.Sender())) {
					return nil
				}
				return auth.Allowed(e, s)
			}
		}},
		{"selection forgets the join rules", func(p *plexus) {
			p.selectAuth = func(v *pdu.Version, typ string, sk *string, sender pdu.UserID, c cjson.Value) []pdu.StateTuple {
				var out []pdu.StateTuple
				for _, t := range auth.SelectAuthTuples(v, typ, sk, sender, c) {
					if t.Type != pdu.TypeJoinRules {
						out = append(out, t)
					}
				}
				return out
			}
		}},
		{"resolution keeps the first state's power levels", func(p *plexus) {
			p.resolve = func(in stateres.Input) (stateres.StateMap, error) {
				m, err := stateres.Resolve(in)
				if err != nil {
					return nil, err
				}
				m = maps.Clone(m)
				pl := pdu.StateTuple{Type: pdu.TypePowerLevels}
				if id, ok := in.States[0][pl]; ok {
					m[pl] = id
				}
				return m, nil
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			for seed := uint64(1); seed <= 6 && r.errors == 0; seed++ {
				c := newChecker(r, seed, v)
				tc.plant(&c.plexus)
				generate(seed, v, c, eventsPerGraph)
			}
			if r.errors == 0 {
				t.Errorf("planted bug %q went unnoticed", tc.name)
			}
		})
	}
}
