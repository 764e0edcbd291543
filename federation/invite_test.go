package federation_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// TestInvites is issue 4's "our users can join, leave and be invited to
// rooms that live on other servers, with /sync working for those rooms
// exactly as for local ones": invites countersigned by the invitee's
// server, accepted and rejected; a knock accepted with an invite; remote
// aliases and profiles.
func TestInvites(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { invites(t, backend) })
	}
}

// follower keeps one client's incremental sync position.
type follower struct {
	t     *testing.T
	c     *mautrix.Client
	since string
}

func follow(t *testing.T, c *mautrix.Client) *follower {
	t.Helper()
	resp, err := c.SyncRequest(context.Background(), 0, "", "", false, event.PresenceOnline)
	if err != nil {
		t.Fatalf("%s: initial sync: %v", c.UserID, err)
	}
	return &follower{t: t, c: c, since: resp.NextBatch}
}

// until long-polls incremental syncs until cond holds for one of them.
func (f *follower) until(what string, cond func(*mautrix.RespSync) bool) *mautrix.RespSync {
	f.t.Helper()
	var got *mautrix.RespSync
	fedtest.Eventually(f.t, 30*time.Second, f.c.UserID.String()+": "+what, func() (bool, error) {
		resp, err := f.c.SyncRequest(context.Background(), 1000, f.since, "", false, event.PresenceOnline)
		if err != nil {
			return false, err
		}
		f.since = resp.NextBatch
		if cond(resp) {
			got = resp
			return true, nil
		}
		return false, nil
	})
	return got
}

// initial is a fresh initial sync.
func initial(t *testing.T, c *mautrix.Client) *mautrix.RespSync {
	t.Helper()
	resp, err := c.SyncRequest(context.Background(), 0, "", "", false, event.PresenceOnline)
	if err != nil {
		t.Fatalf("%s: initial sync: %v", c.UserID, err)
	}
	return resp
}

// inviteState checks an invite_state: the room's name as stripped state,
// and the invite itself from inviter.
func inviteState(t *testing.T, who id.UserID, ir *mautrix.SyncInvitedRoom, name string, inviter id.UserID) {
	t.Helper()
	var sawName, sawInvite, sawCreate bool
	for _, ev := range ir.State.Events {
		_ = ev.Content.ParseRaw(ev.Type)
		switch {
		case ev.Type == event.StateRoomName:
			sawName = ev.Content.AsRoomName().Name == name
		case ev.Type == event.StateCreate:
			sawCreate = true
		case ev.Type == event.StateMember && ev.GetStateKey() == who.String():
			sawInvite = ev.Content.AsMember().Membership == event.MembershipInvite && ev.Sender == inviter
		}
	}
	if !sawName || !sawInvite || !sawCreate {
		t.Fatalf("%s's invite_state: name %v, create %v, invite from %s %v (%d events)", who, sawName, sawCreate, inviter, sawInvite, len(ir.State.Events))
	}
}

// placed waits until each of servers has placed the event in its copy
// of the room.
func placed(t *testing.T, room id.RoomID, eventID string, servers ...*fedtest.Server) {
	t.Helper()
	for _, s := range servers {
		fedtest.Eventually(t, 30*time.Second, s.Name+" to place "+eventID, func() (bool, error) {
			_, ok := s.Graph(t, string(room)).Prevs[eventID]
			return ok, nil
		})
	}
}

func membershipOn(t *testing.T, c *mautrix.Client, room id.RoomID, user id.UserID) event.Membership {
	t.Helper()
	var m event.MemberEventContent
	if err := c.StateEvent(context.Background(), room, event.StateMember, user.String(), &m); err != nil {
		return ""
	}
	return m.Membership
}

func invites(t *testing.T, backend string) {
	ctx := context.Background()
	f := newFederation(t, backend, "hs1", "hs2", "hs3")
	hs1, hs2, hs3 := f.Servers["hs1"], f.Servers["hs2"], f.Servers["hs3"]
	alice := register(t, hs1, "alice")
	bob := register(t, hs2, "bob")
	carol := register(t, hs3, "carol")
	dave := register(t, hs2, "dave")
	bobSync, carolSync, daveSync := follow(t, bob), follow(t, carol), follow(t, dave)

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Invitation only"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID

	t.Run("invite accepted", func(t *testing.T) {
		if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatalf("inviting bob@hs2: %v", err)
		}
		// hs2 countersigned it, so hs1 stored it.
		if m := membershipOn(t, alice, room, bob.UserID); m != event.MembershipInvite {
			t.Fatalf("bob's membership on hs1 is %q", m)
		}
		resp := bobSync.until("the invite in rooms.invite", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[room] != nil })
		inviteState(t, bob.UserID, resp.Rooms.Invite[room], "Invitation only", alice.UserID)
		if ir := initial(t, bob).Rooms.Invite[room]; ir == nil {
			t.Fatal("the invite is not in bob's initial sync")
		}

		// Joining needs no via: the inviting server is asked.
		if _, err := bob.JoinRoom(ctx, room.String(), nil); err != nil {
			t.Fatalf("bob accepting: %v", err)
		}
		resp = bobSync.until("the room in rooms.join", func(r *mautrix.RespSync) bool { return r.Rooms.Join[room] != nil })
		if resp.Rooms.Invite[room] != nil {
			t.Fatal("the room is in both rooms.join and rooms.invite")
		}
		if r := initial(t, bob); r.Rooms.Invite[room] != nil || r.Rooms.Join[room] == nil {
			t.Fatalf("after the join, bob's initial sync has invite %v join %v", r.Rooms.Invite[room] != nil, r.Rooms.Join[room] != nil)
		}
		hello := send(t, bob, room, "thanks for the invite")
		placed(t, room, hello, hs1, hs2)
	})

	t.Run("invite rejected", func(t *testing.T) {
		if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
			t.Fatalf("inviting carol@hs3: %v", err)
		}
		resp := carolSync.until("the invite", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[room] != nil })
		inviteState(t, carol.UserID, resp.Rooms.Invite[room], "Invitation only", alice.UserID)
		if _, err := carol.LeaveRoom(ctx, room); err != nil {
			t.Fatalf("carol rejecting: %v", err)
		}
		resp = carolSync.until("the room in rooms.leave", func(r *mautrix.RespSync) bool { return r.Rooms.Leave[room] != nil })
		var sawLeave bool
		for _, ev := range resp.Rooms.Leave[room].Timeline.Events {
			_ = ev.Content.ParseRaw(ev.Type)
			sawLeave = sawLeave || ev.Type == event.StateMember && ev.GetStateKey() == carol.UserID.String() &&
				ev.Content.AsMember().Membership == event.MembershipLeave
		}
		if !sawLeave || resp.Rooms.Invite[room] != nil {
			t.Fatalf("carol's leave section: leave event %v, still invited %v", sawLeave, resp.Rooms.Invite[room] != nil)
		}
		if r := initial(t, carol); r.Rooms.Invite[room] != nil {
			t.Fatal("the rejected invite is still in carol's initial sync")
		}
		// The rejection went through hs1 into the room; hs3 has no copy.
		fedtest.Eventually(t, 30*time.Second, "hs1 to see carol's rejection", func() (bool, error) {
			m := membershipOn(t, alice, room, carol.UserID)
			return m == event.MembershipLeave, fmt.Errorf("carol's membership on hs1 is %q", m)
		})
		if g := hs3.Graph(t, string(room)); len(g.Prevs) != 0 {
			t.Fatalf("hs3 placed %d events of a room it never joined", len(g.Prevs))
		}
		// A second leave has nothing to reject.
		if _, err := carol.LeaveRoom(ctx, room); err == nil {
			t.Fatal("leaving again succeeded")
		}
	})

	t.Run("invite refused by the invitee's server", func(t *testing.T) {
		_, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: "@nobody:hs2"})
		var herr mautrix.HTTPError
		if !errors.As(err, &herr) || herr.RespError == nil || herr.RespError.ErrCode != "M_NOT_FOUND" || herr.Response.StatusCode != http.StatusNotFound {
			t.Fatalf("inviting an unknown user of hs2: %v, want hs2's 404 M_NOT_FOUND", err)
		}
		if m := membershipOn(t, alice, room, "@nobody:hs2"); m != "" {
			t.Fatalf("the refused invite is in the room: %q", m)
		}
	})

	t.Run("knock accepted", func(t *testing.T) {
		knockRoom, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Knock first",
			RoomVersion: "11",
			InitialState: []*event.Event{{Type: event.StateJoinRules, StateKey: new(string),
				Content: event.Content{Parsed: &event.JoinRulesEventContent{JoinRule: event.JoinRuleKnock}}}}})
		if err != nil {
			t.Fatal(err)
		}
		kr := knockRoom.RoomID
		if _, err := dave.KnockRoom(ctx, kr.String(), &mautrix.ReqKnockRoom{Via: []string{"hs1"}, Reason: "let me in"}); err != nil {
			t.Fatalf("dave knocking: %v", err)
		}
		fedtest.Eventually(t, 30*time.Second, "hs1 to see dave's knock", func() (bool, error) {
			m := membershipOn(t, alice, kr, dave.UserID)
			return m == event.MembershipKnock, fmt.Errorf("dave's membership on hs1 is %q", m)
		})
		if _, err := alice.InviteUser(ctx, kr, &mautrix.ReqInviteUser{UserID: dave.UserID}); err != nil {
			t.Fatalf("alice accepting the knock: %v", err)
		}
		resp := daveSync.until("the invite", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[kr] != nil })
		inviteState(t, dave.UserID, resp.Rooms.Invite[kr], "Knock first", alice.UserID)
		if _, err := dave.JoinRoom(ctx, kr.String(), nil); err != nil {
			t.Fatalf("dave joining: %v", err)
		}
		hi := send(t, dave, kr, "knock knock")
		placed(t, kr, hi, hs1, hs2)
	})

	t.Run("remote alias", func(t *testing.T) {
		pub, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "lobby", Name: "Lobby"})
		if err != nil {
			t.Fatal(err)
		}
		resolved, err := bob.ResolveAlias(ctx, "#lobby:hs1")
		if err != nil {
			t.Fatalf("bob resolving #lobby:hs1: %v", err)
		}
		if resolved.RoomID != pub.RoomID || len(resolved.Servers) == 0 || resolved.Servers[0] != "hs1" {
			t.Fatalf("#lobby:hs1 resolved to %s via %v, want %s via hs1", resolved.RoomID, resolved.Servers, pub.RoomID)
		}
		if _, err := bob.ResolveAlias(ctx, "#nowhere:hs1"); err == nil {
			t.Fatal("an unknown remote alias resolved")
		}
		joined, err := bob.JoinRoom(ctx, "#lobby:hs1", nil)
		if err != nil {
			t.Fatalf("bob joining #lobby:hs1: %v", err)
		}
		if joined.RoomID != pub.RoomID {
			t.Fatalf("joined %s, want %s", joined.RoomID, pub.RoomID)
		}
		hi := send(t, bob, pub.RoomID, "joined by alias")
		placed(t, pub.RoomID, hi, hs1, hs2)
	})

	t.Run("remote profile", func(t *testing.T) {
		if err := alice.SetDisplayName(ctx, "Alice of hs1"); err != nil {
			t.Fatal(err)
		}
		p, err := carol.GetProfile(ctx, alice.UserID)
		if err != nil {
			t.Fatalf("carol reading alice's profile: %v", err)
		}
		if p.DisplayName != "Alice of hs1" {
			t.Fatalf("alice's display name seen from hs3: %q", p.DisplayName)
		}
		var herr mautrix.HTTPError
		if _, err := carol.GetProfile(ctx, "@nobody:hs1"); !errors.As(err, &herr) || herr.Response.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown remote profile: %v, want 404", err)
		}
	})
}
