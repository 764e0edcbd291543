package rooms

import (
	"context"
	"errors"
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// TestRemoteInvite is the inviting side of "Inviting to a room": hs1
// builds the invite without storing it, hs2 countersigns it, and hs1
// checks the countersignature and admits the event.
func TestRemoteInvite(t *testing.T) {
	onBackends(t, func(t *testing.T, net func() *testNet) {
		ctx := context.Background()
		n := net()
		hs1, hs2 := n.server(t, "hs1"), n.server(t, "hs2")
		room := residentRoom(t, hs1, DefaultVersion, "invite")
		alice, bob := UserID("@alice:hs1"), "@bob:hs2"
		before := hs1.extremities(t, room)

		ev, err := hs1.svc.Invite(ctx, room, LocalEvent{Type: pdu.TypeMember, StateKey: &bob, Sender: alice,
			Content: mustContent(t, map[string]any{"membership": "invite"})})
		if err != nil {
			t.Fatal(err)
		}
		if got := hs1.extremities(t, room); len(got) != len(before) || got[0] != before[0] {
			t.Fatalf("Invite moved the extremities: %v, was %v", got, before)
		}
		if recs, _ := hs1.store.Events(ctx, []string{string(ev.ID())}); len(recs) != 0 {
			t.Fatal("Invite stored the event")
		}
		if len(ev.PrevEvents()) != 1 || string(ev.PrevEvents()[0]) != before[0] {
			t.Fatalf("prev_events %v, want the extremity %v", ev.PrevEvents(), before)
		}

		// Without the invitee's signature the answer is refused.
		if _, err := hs1.svc.Countersigned(ev, ev.JSON(), "hs2"); err == nil {
			t.Fatal("an answer without hs2's signature was accepted")
		}
		signed, err := hs2.svc.Countersign(DefaultVersion, ev.JSON())
		if err != nil {
			t.Fatal(err)
		}
		got, err := hs1.svc.Countersigned(ev, signed.JSON(), "hs2")
		if err != nil {
			t.Fatal(err)
		}
		a, err := hs1.svc.Admit(ctx, room, got.JSON())
		if err != nil {
			t.Fatal(err)
		}
		if a.Rejected != "" || a.SoftFailed || a.Outlier {
			t.Fatalf("admitted invite: rejected %q soft-failed %v outlier %v", a.Rejected, a.SoftFailed, a.Outlier)
		}
		if id := hs1.current(t, room)[stateKey(pdu.TypeMember, bob)]; id != string(ev.ID()) {
			t.Fatalf("bob's membership is %q, want the invite %s", id, ev.ID())
		}

		// Another event for the answer: refused.
		other, err := hs1.svc.Invite(ctx, room, LocalEvent{Type: pdu.TypeMember, StateKey: str("@carol:hs2"), Sender: alice,
			Content: mustContent(t, map[string]any{"membership": "invite"})})
		if err != nil {
			t.Fatal(err)
		}
		var fe *FormatError
		if _, err := hs1.svc.Countersigned(other, signed.JSON(), "hs2"); !errors.As(err, &fe) {
			t.Fatalf("answer with another event: %v, want a FormatError", err)
		}
	})
}

func TestRemoteInviteRefusals(t *testing.T) {
	ctx := context.Background()
	n := newTestNet()
	hs1 := n.server(t, "hs1")
	room := residentRoom(t, hs1, DefaultVersion, "invite")
	invite := mustContent(t, map[string]any{"membership": "invite"})
	for _, tc := range []struct {
		name string
		le   LocalEvent
		want func(error) bool
	}{
		{"local invitee", LocalEvent{Type: pdu.TypeMember, StateKey: str("@bob:hs1"), Sender: "@alice:hs1", Content: invite},
			func(err error) bool { return errors.Is(err, ErrNotRemoteInvite) }},
		{"not an invite", LocalEvent{Type: pdu.TypeMember, StateKey: str("@bob:hs2"), Sender: "@alice:hs1",
			Content: mustContent(t, map[string]any{"membership": "ban"})},
			func(err error) bool { return errors.Is(err, ErrNotRemoteInvite) }},
		{"remote sender", LocalEvent{Type: pdu.TypeMember, StateKey: str("@bob:hs2"), Sender: "@mallory:hs3", Content: invite},
			func(err error) bool { return errors.Is(err, ErrNotLocal) }},
		{"sender not in the room", LocalEvent{Type: pdu.TypeMember, StateKey: str("@bob:hs2"), Sender: "@eve:hs1", Content: invite},
			func(err error) bool { var na *NotAllowedError; return errors.As(err, &na) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hs1.svc.Invite(ctx, room, tc.le)
			if !tc.want(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
}
