package signalling_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling"
)

// fakeFederation is federation for signalling: it records EDUs, says
// hs2.test is in every room and answers nothing else.
type fakeFederation struct {
	mu   sync.Mutex // guards edus
	edus []string   // "type dests content"
}

func (f *fakeFederation) Join(context.Context, string, string, []string, map[string]any) (string, error) {
	return "", fmt.Errorf("no joins here")
}

func (f *fakeFederation) SendEDU(_ context.Context, dests []string, typ string, content json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.edus = append(f.edus, fmt.Sprintf("%s %v %s", typ, dests, content))
	return nil
}

func (f *fakeFederation) ServersInRoom(context.Context, string) ([]string, error) {
	return []string{"hs2.test"}, nil
}

func (f *fakeFederation) QueryRemoteKeys(context.Context, string, json.RawMessage) (json.RawMessage, error) {
	return nil, fmt.Errorf("unreachable")
}

func (f *fakeFederation) ClaimRemoteKeys(context.Context, string, json.RawMessage) (json.RawMessage, error) {
	return nil, fmt.Errorf("unreachable")
}

func (f *fakeFederation) Backfill(context.Context, string, []string, int) error {
	return fmt.Errorf("unreachable")
}

// waitEDU waits for an EDU whose record contains all of parts.
func (f *fakeFederation) waitEDU(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		for _, e := range f.edus {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(e, p)
			}
			if ok {
				f.mu.Unlock()
				return
			}
		}
		all := fmt.Sprint(f.edus)
		f.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no EDU with %q; sent: %s", parts, all)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fedPair is hs1 (signalling under test, with a fake federation) and a
// bare room service for hs2, whose users join hs1's rooms by the events
// hs2 signs, as they would over federation.
type fedPair struct {
	hs1    *testServer
	fed    *fakeFederation
	rooms1 *rooms.Service
	rooms2 *rooms.Service
	db1    *storage.DB
}

func startFedPair(t *testing.T, backend string) *fedPair {
	t.Helper()
	ctx := context.Background()
	_, key1, _ := ed25519.GenerateKey(nil)
	_, key2, _ := ed25519.GenerateKey(nil)
	keys := func(server rooms.ServerName, keyID string) (rooms.VerifyKey, bool) {
		far := time.Now().Add(time.Hour).UnixMilli()
		switch {
		case server == "hs1.test" && keyID == "ed25519:t":
			return rooms.VerifyKey{Key: key1.Public().(ed25519.PublicKey), ValidUntilTS: far}, true
		case server == "hs2.test" && keyID == "ed25519:t":
			return rooms.VerifyKey{Key: key2.Public().(ed25519.PublicKey), ValidUntilTS: far}, true
		}
		return rooms.VerifyKey{}, false
	}
	open := func() (*storage.DB, string) {
		dsn, dir := storagetest.Fresh(t, backend)
		if dir == "" {
			dir = t.TempDir()
		}
		db, err := storage.Open(ctx, dsn, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db, dir
	}
	db1, dir := open()
	db2, _ := open()
	feed, err := signalling.NewFeed(ctx, signalling.FeedConfig{ServerName: "hs1.test"}, db1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { feed.Close() })
	r1, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: "hs1.test", KeyID: "ed25519:t", Key: key1}},
		rooms.Deps{Store: db1, Listener: feed, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r1.Close() })
	r2, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: "hs2.test", KeyID: "ed25519:t", Key: key2}},
		rooms.Deps{Store: db2, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	fed := &fakeFederation{}
	sig, err := signalling.New(signalling.Config{
		ServerName: "hs1.test", Registration: signalling.RegistrationOpen, DataDir: dir, CookieKey: make([]byte, 32),
	}, signalling.Deps{DB: db1, Rooms: r1, Feed: feed, Federation: fed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sig.Close() })
	if err := sig.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0"}, server.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	sig.Register(srv)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &fedPair{
		hs1: &testServer{URL: "http://" + srv.Addr().String(), Name: "hs1.test", Sig: sig, DB: db1},
		fed: fed, rooms1: r1, rooms2: r2, db1: db1,
	}
}

// remoteJoin makes hs2's user join hs1's room: hs2 copies the room's
// events, appends the join, and hs1 admits it.
func (p *fedPair) remoteJoin(t *testing.T, roomID, userID string) {
	t.Helper()
	ctx := context.Background()
	recs, err := p.db1.EventsSince(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.RoomID != roomID {
			continue
		}
		if rec.Type == "m.room.create" {
			if _, err := p.rooms2.Begin(ctx, rec.JSON); err != nil {
				t.Fatalf("hs2 begins the room: %v", err)
			}
			continue
		}
		if _, err := p.rooms2.Admit(ctx, rooms.RoomID(roomID), rec.JSON); err != nil {
			t.Fatalf("hs2 admits %s: %v", rec.EventID, err)
		}
	}
	join, err := p.rooms2.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
		Type: "m.room.member", StateKey: &userID, Sender: rooms.UserID(userID),
		Content: cjson.Obj(cjson.Member{Key: "membership", Value: cjson.Str("join")}),
	})
	if err != nil {
		t.Fatalf("hs2 joins: %v", err)
	}
	if _, err := p.rooms1.Admit(ctx, rooms.RoomID(roomID), join.Event.JSON()); err != nil {
		t.Fatalf("hs1 admits the join: %v", err)
	}
}

// eventually retries fn until it returns nil.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEDUsAcrossServers(t *testing.T) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { testEDUsAcrossServers(t, b) })
	}
}

func testEDUsAcrossServers(t *testing.T, backend string) {
	ctx := context.Background()
	p := startFedPair(t, backend)
	hc := &http.Client{}
	alice := &api{base: p.hs1.URL, hc: hc}
	var reg struct {
		AccessToken string `json:"access_token"`
		UserID      string `json:"user_id"`
		DeviceID    string `json:"device_id"`
	}
	if err := alice.do("POST", "/_matrix/client/v3/register", map[string]any{
		"username": "alice", "password": "pw", "auth": map[string]string{"type": "m.login.dummy"},
	}, &reg); err != nil {
		t.Fatal(err)
	}
	alice.token = reg.AccessToken
	var room struct {
		RoomID string `json:"room_id"`
	}
	if err := alice.do("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}, &room); err != nil {
		t.Fatal(err)
	}
	var sent struct {
		EventID string `json:"event_id"`
	}
	roomPath := "/_matrix/client/v3/rooms/" + url.PathEscape(room.RoomID)
	if err := alice.do("PUT", roomPath+"/send/m.room.message/1", map[string]any{"msgtype": "m.text", "body": "hi"}, &sent); err != nil {
		t.Fatal(err)
	}
	const dave = "@dave:hs2.test"
	p.remoteJoin(t, room.RoomID, dave)

	// Inbound: dave's typing and receipt, once hs1 has seen him join.
	typing := fmt.Sprintf(`{"room_id": %q, "user_id": %q, "typing": true}`, room.RoomID, dave)
	eventually(t, "dave's typing", func() error { return p.hs1.Sig.HandleEDU(ctx, "hs2.test", "m.typing", []byte(typing)) })
	receipt := fmt.Sprintf(`{%q: {"m.read": {%q: {"event_ids": [%q], "data": {"ts": 1234}}}}}`, room.RoomID, dave, sent.EventID)
	if err := p.hs1.Sig.HandleEDU(ctx, "hs2.test", "m.receipt", []byte(receipt)); err != nil {
		t.Fatal(err)
	}
	toDevice := fmt.Sprintf(`{"sender": %q, "type": "m.room.encrypted", "message_id": "abc", "messages": {%q: {"*": {"ciphertext": "x"}}}}`, dave, reg.UserID)
	if err := p.hs1.Sig.HandleEDU(ctx, "hs2.test", "m.direct_to_device", []byte(toDevice)); err != nil {
		t.Fatal(err)
	}
	// alice's /sync shows them where local ones go.
	var next string
	eventually(t, "alice's sync", func() error {
		var s struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Join map[string]struct {
					Ephemeral struct {
						Events []json.RawMessage `json:"events"`
					} `json:"ephemeral"`
				} `json:"join"`
			} `json:"rooms"`
			ToDevice struct {
				Events []json.RawMessage `json:"events"`
			} `json:"to_device"`
		}
		if err := alice.do("GET", "/_matrix/client/v3/sync?timeout=0", nil, &s); err != nil {
			return err
		}
		next = s.NextBatch
		eph := fmt.Sprintf("%s", s.Rooms.Join[room.RoomID].Ephemeral.Events)
		switch {
		case !strings.Contains(eph, `"user_ids":["@dave:hs2.test"]`):
			return fmt.Errorf("no typing in %s", eph)
		case !strings.Contains(eph, `"@dave:hs2.test":{"ts":1234}`):
			return fmt.Errorf("no receipt in %s", eph)
		case len(s.ToDevice.Events) != 1 || !strings.Contains(string(s.ToDevice.Events[0]), `"sender":"@dave:hs2.test"`):
			return fmt.Errorf("to_device: %s", s.ToDevice.Events)
		}
		return nil
	})

	// A retried to-device message is not delivered twice. Each key
	// change puts dave in device_lists.changed of the next sync.
	if err := p.hs1.Sig.HandleEDU(ctx, "hs2.test", "m.direct_to_device", []byte(toDevice)); err != nil {
		t.Fatal(err)
	}
	for i, change := range []struct{ typ, content string }{
		{"m.device_list_update", fmt.Sprintf(`{"user_id": %q, "device_id": "D", "stream_id": 1, "prev_id": []}`, dave)},
		{"m.signing_key_update", fmt.Sprintf(`{"user_id": %q}`, dave)},
	} {
		if err := p.hs1.Sig.HandleEDU(ctx, "hs2.test", change.typ, []byte(change.content)); err != nil {
			t.Fatal(err)
		}
		var s2 struct {
			NextBatch string `json:"next_batch"`
			ToDevice  *struct {
				Events []json.RawMessage `json:"events"`
			} `json:"to_device"`
			DeviceLists struct {
				Changed []string `json:"changed"`
			} `json:"device_lists"`
		}
		if err := alice.do("GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(next), nil, &s2); err != nil {
			t.Fatal(err)
		}
		next = s2.NextBatch
		if i == 0 && s2.ToDevice != nil && len(s2.ToDevice.Events) != 0 {
			t.Errorf("to-device delivered twice: %s", s2.ToDevice.Events)
		}
		if fmt.Sprint(s2.DeviceLists.Changed) != "["+dave+"]" {
			t.Errorf("after %s: changed %v", change.typ, s2.DeviceLists.Changed)
		}
	}

	// Bad EDUs are refused; unknown types ignored.
	for _, bad := range []struct{ name, typ, content string }{
		{"typing of another server's user", "m.typing", fmt.Sprintf(`{"room_id": %q, "user_id": "@eve:hs3.test", "typing": true}`, room.RoomID)},
		{"typing without typing", "m.typing", fmt.Sprintf(`{"room_id": %q, "user_id": %q}`, room.RoomID, dave)},
		{"typing not JSON", "m.typing", `[`},
		{"receipt of another server's user", "m.receipt", fmt.Sprintf(`{%q: {"m.read": {"@eve:hs3.test": {"event_ids": [%q], "data": {"ts": 1}}}}}`, room.RoomID, sent.EventID)},
		{"receipt without ts", "m.receipt", fmt.Sprintf(`{%q: {"m.read": {%q: {"event_ids": [%q], "data": {}}}}}`, room.RoomID, dave, sent.EventID)},
		{"receipt of a room dave is not in", "m.receipt", fmt.Sprintf(`{"!nope:hs1.test": {"m.read": {%q: {"event_ids": [%q], "data": {"ts": 1}}}}}`, dave, sent.EventID)},
		{"device list update of another server's user", "m.device_list_update", `{"user_id": "@eve:hs3.test", "device_id": "D", "stream_id": 1}`},
		{"device list update without stream_id", "m.device_list_update", fmt.Sprintf(`{"user_id": %q, "device_id": "D"}`, dave)},
		{"to-device from another server's user", "m.direct_to_device", fmt.Sprintf(`{"sender": "@eve:hs3.test", "type": "t", "message_id": "z", "messages": {%q: {"*": {}}}}`, reg.UserID)},
	} {
		if err := p.hs1.Sig.HandleEDU(ctx, "hs2.test", bad.typ, []byte(bad.content)); err == nil {
			t.Errorf("%s: accepted", bad.name)
		}
	}
	if err := p.hs1.Sig.HandleEDU(ctx, "hs2.test", "m.presence", []byte(`{"push": []}`)); err != nil {
		t.Errorf("unknown EDU type: %v", err)
	}

	// Outbound: alice's typing, receipt, keys and to-device for dave.
	if err := alice.do("PUT", roomPath+"/typing/"+url.PathEscape(reg.UserID), map[string]any{"typing": true, "timeout": 30000}, nil); err != nil {
		t.Fatal(err)
	}
	p.fed.waitEDU(t, "m.typing [hs2.test]", `"typing":true`, `"user_id":"`+reg.UserID+`"`, room.RoomID)
	if err := alice.do("POST", roomPath+"/receipt/m.read/"+url.PathEscape(sent.EventID), map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	p.fed.waitEDU(t, "m.receipt [hs2.test]", `"event_ids":["`+sent.EventID+`"]`, `"`+reg.UserID+`"`)
	if err := alice.do("PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/t1", map[string]any{
		"messages": map[string]any{dave: map[string]any{"DAVEDEV": map[string]any{"ciphertext": "y"}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	p.fed.waitEDU(t, "m.direct_to_device [hs2.test]", `"sender":"`+reg.UserID+`"`, `"DAVEDEV":{"ciphertext":"y"}`)
	deviceKeys := map[string]any{
		"user_id": reg.UserID, "device_id": reg.DeviceID, "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys": map[string]string{"curve25519:" + reg.DeviceID: "c", "ed25519:" + reg.DeviceID: "e"}, "signatures": map[string]any{},
	}
	if err := alice.do("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": deviceKeys}, nil); err != nil {
		t.Fatal(err)
	}
	p.fed.waitEDU(t, "m.device_list_update [hs2.test]", `"device_id":"`+reg.DeviceID+`"`, `"deleted":false`)

	// Keys of users of a server that does not answer are failures.
	var q struct {
		Failures map[string]json.RawMessage `json:"failures"`
	}
	if err := alice.do("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{dave: []string{}}}, &q); err != nil {
		t.Fatal(err)
	}
	if q.Failures["hs2.test"] == nil {
		t.Errorf("query failures: %v", q.Failures)
	}
}
