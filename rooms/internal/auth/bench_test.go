package auth

import (
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// BenchmarkAllowed measures the rules for the two commonest events: a
// message, and a membership change (a moderator kicking a member, which
// reads power levels for both users). It reports allocations: checking an
// event reads state in place and should not allocate.
func BenchmarkAllowed(b *testing.B) {
	for _, ver := range allVersions {
		r := newRoom(b, ver)
		for _, bc := range []struct {
			name string
			e    *pdu.Event
		}{
			{"message", r.message(carol)},
			{"membership", r.member(bob, carol, "leave", nil)},
			{"power_levels", r.build(pdu.TypePowerLevels, alice, sk(""), map[string]any{"users": r.users(map[string]any{string(bob): 40})})},
		} {
			b.Run(bc.name+"/v"+ver, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := Allowed(bc.e, r.get); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestAllowedDoesNotAllocate(t *testing.T) {
	r := newRoom(t, "12")
	for _, e := range []*pdu.Event{r.message(carol), r.member(bob, carol, "leave", nil)} {
		if n := testing.AllocsPerRun(100, func() { _ = Allowed(e, r.get) }); n != 0 {
			t.Errorf("%s: %v allocations per check", e.Type(), n)
		}
	}
}
