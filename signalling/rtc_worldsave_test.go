//go:build goolm

package signalling_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	protoLogger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/signalling"
)

// TestWorldStateSavedDuringCall wires the SFU to the room state as
// cmd/plexus does (sfu.Deps.World = Signalling.CallWorld) with a short
// WorldSaveInterval: a participant who joined with a token from the
// token service changes the call's world, and the change is in the
// room's org.plexus.world state while the call is still running.
func TestWorldStateSavedDuringCall(t *testing.T) {
	ctx := context.Background()
	srv := startRTCServer(t, storagetest.SQLite, &testClock{}, stubVerifier{})
	alice := register(t, srv, "alice")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID // alice, its creator, may send the world state
	var since string
	syncUntil(t, alice, &since, "the room", func(r *mautrix.RespSync) bool { return r.Rooms.Join[room] != nil })

	const interval = 200 * time.Millisecond
	media, err := sfu.New(sfu.Config{
		APIKey: rtcKey, APISecret: rtcSecret, ListenIP: "127.0.0.1",
		WorldSaveInterval: interval, EmptyTimeout: time.Minute,
	}, sfu.Deps{Logger: slog.New(slog.DiscardHandler), World: srv.Sig.CallWorld()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/livekit/sfu/", http.StripPrefix("/livekit/sfu", media.Handler()))
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		if err := media.Close(); err != nil {
			t.Errorf("sfu Close: %v", err)
		}
		hs.Close()
	})

	a := postRTC(t, srv, "/get_token", map[string]any{"room_id": room, "slot_id": "m.call#ROOM", "openid_token": openIDOf(t, alice),
		"member": map[string]string{"id": "member-1", "claimed_user_id": string(alice.UserID), "claimed_device_id": string(alice.DeviceID)}})
	if a.status != http.StatusOK {
		t.Fatalf("token: %d %s", a.status, a.errcode)
	}
	lksdk.SetLogger(protoLogger.GetDiscardLogger())
	call, err := lksdk.ConnectToRoomWithToken("ws"+strings.TrimPrefix(hs.URL, "http")+"/livekit/sfu", a.JWT, lksdk.NewRoomCallback(),
		lksdk.WithAutoSubscribe(false), lksdk.WithLogger(protoLogger.GetDiscardLogger()), lksdk.WithConnectTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Disconnect)

	// A world update (sfu/internal/data's format) on the relay's world
	// topic.
	update, _ := json.Marshal(map[string]any{"ts": time.Now().UnixMilli(), "set": map[string]any{"door": "open"}})
	if err := call.LocalParticipant.PublishDataPacket(lksdk.UserData(update),
		lksdk.WithDataPublishTopic("plexus.world"), lksdk.WithDataPublishReliable(true)); err != nil {
		t.Fatal(err)
	}
	typ := event.Type{Type: signalling.WorldEventType, Class: event.StateEventType}
	deadline := time.Now().Add(10*interval + 10*time.Second)
	for {
		var world struct {
			Entries map[string]struct {
				Value json.RawMessage `json:"value"`
			} `json:"entries"`
		}
		if err := alice.StateEvent(ctx, room, typ, "", &world); err == nil && string(world.Entries["door"].Value) == `"open"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the world change never reached the room state during the call")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	rooms := media.Rooms()
	if len(rooms) != 1 || len(rooms[0].Participants) != 1 || call.ConnectionState() != lksdk.ConnectionStateConnected {
		t.Fatalf("the call ended before the save was seen: %+v", rooms)
	}
}
