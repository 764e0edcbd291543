package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
)

// rita is on a server that answers; sam's server is down; tom's hangs.
const (
	rita = "@rita:remote.test"
	sam  = "@sam:down.test"
	tom  = "@tom:slow.test"
)

// sentEDU is an EDU handed to the fake federation.
type sentEDU struct {
	dests   []string
	typ     string
	content map[string]json.RawMessage
}

// fakeRemote is federation for the keys package: it records EDUs and
// answers key queries and claims for remote.test, fails for down.test
// and hangs for slow.test until the caller gives up.
type fakeRemote struct {
	mu     sync.Mutex // guards the fields below
	edus   []sentEDU
	bodies map[string]string // server -> last request body
	// answers are remote.test's answers to query and claim.
	query, claim string
}

func (f *fakeRemote) SendEDU(_ context.Context, dests []string, typ string, content json.RawMessage) error {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.edus = append(f.edus, sentEDU{dests, typ, c})
	return nil
}

func (f *fakeRemote) answer(ctx context.Context, server string, body json.RawMessage, ans string) (json.RawMessage, error) {
	f.mu.Lock()
	if f.bodies == nil {
		f.bodies = map[string]string{}
	}
	f.bodies[server] = string(body)
	f.mu.Unlock()
	switch server {
	case "remote.test":
		return json.RawMessage(ans), nil
	case "slow.test":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, errors.New("connection refused")
}

func (f *fakeRemote) QueryRemoteKeys(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error) {
	return f.answer(ctx, server, body, f.query)
}

func (f *fakeRemote) ClaimRemoteKeys(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error) {
	return f.answer(ctx, server, body, f.claim)
}

// take returns and forgets the EDUs sent so far.
func (f *fakeRemote) take() []sentEDU {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.edus
	f.edus = nil
	return out
}

// withRemote wires a fake federation into e, with rita sharing a room
// with alice and bob.
func withRemote(e *env) *fakeRemote {
	f := &fakeRemote{}
	e.k.deps.Remote = f
	e.k.deps.SharedUsers = func(_ context.Context, user string) ([]string, error) {
		if user == carol {
			return []string{carol}, nil
		}
		return []string{alice, bob, rita}, nil
	}
	return f
}

func str(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s is not a string: %v", raw, err)
	}
	return s
}

func TestDeviceListUpdatesGoToSharingServers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := withRemote(e)
		dk1 := deviceKeysText(t, alice, "ALICE1", newKeyPair(t))
		e.ok("POST", pUpload, "alice1", `{"device_keys": `+string(dk1)+`}`, nil)
		dk2 := deviceKeysText(t, alice, "ALICE2", newKeyPair(t))
		e.ok("POST", pUpload, "alice2", `{"device_keys": `+string(dk2)+`}`, nil)
		// One-time keys alone change no device list.
		e.ok("POST", pUpload, "alice2", `{"one_time_keys": {"signed_curve25519:A": "k"}}`, nil)
		if err := e.k.DeleteDevice(context.Background(), alice, "ALICE2"); err != nil {
			t.Fatal(err)
		}
		// Carol shares a room with nobody remote: nothing is sent.
		e.ok("POST", pUpload, "carol1", `{"device_keys": `+string(deviceKeysText(t, carol, "CAROL1", newKeyPair(t)))+`}`, nil)

		edus := f.take()
		if len(edus) != 3 {
			t.Fatalf("sent %d EDUs, want 3: %+v", len(edus), edus)
		}
		var streams []int64
		for i, want := range []struct {
			device  string
			deleted bool
			keys    []byte
		}{{"ALICE1", false, dk1}, {"ALICE2", false, dk2}, {"ALICE2", true, nil}} {
			u := edus[i]
			if u.typ != EDUDeviceListUpdate || fmt.Sprint(u.dests) != "[remote.test]" {
				t.Fatalf("EDU %d: %s to %v", i, u.typ, u.dests)
			}
			if str(t, u.content["user_id"]) != alice || str(t, u.content["device_id"]) != want.device ||
				string(u.content["deleted"]) != fmt.Sprint(want.deleted) {
				t.Errorf("EDU %d: %s", i, asJSON(u.content))
			}
			if want.keys != nil && string(u.content["keys"]) != string(want.keys) {
				t.Errorf("EDU %d keys: got %s, want the uploaded %s", i, u.content["keys"], want.keys)
			}
			if want.keys == nil && u.content["keys"] != nil {
				t.Errorf("EDU %d: a deleted device with keys %s", i, u.content["keys"])
			}
			var id int64
			var prev []int64
			if json.Unmarshal(u.content["stream_id"], &id) != nil || json.Unmarshal(u.content["prev_id"], &prev) != nil {
				t.Fatalf("EDU %d: stream_id %s prev_id %s", i, u.content["stream_id"], u.content["prev_id"])
			}
			// Each update names the one before, so receivers see gaps.
			if i > 0 && (len(prev) != 1 || prev[0] != streams[i-1] || id <= prev[0]) {
				t.Errorf("EDU %d: stream_id %d prev_id %v after %v", i, id, prev, streams)
			}
			streams = append(streams, id)
		}
		if got := str(t, edus[0].content["device_display_name"]); got != "Alice's phone" {
			t.Errorf("device_display_name = %q", got)
		}

		a := newCrossSet(t, alice)
		e.ok("POST", pSigning, "alice1", a.body(""), nil)
		edus = f.take()
		if len(edus) != 1 || edus[0].typ != EDUSigningKeyUpdate {
			t.Fatalf("after cross-signing upload: %+v", edus)
		}
		c := edus[0].content
		if str(t, c["user_id"]) != alice || string(c["master_key"]) != string(a.masterRaw) ||
			string(c["self_signing_key"]) != string(a.sskRaw) || c["user_signing_key"] != nil {
			t.Errorf("m.signing_key_update: %s", asJSON(c))
		}
	})
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestToDeviceForRemoteUsersLeavesThroughTheOutbox(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// Without federation the message waits.
		e.ok("PUT", pSend+"m.test/t1", "alice1", `{"messages": {"@rita:remote.test": {"R1": {"n": 1}}, "@bob:test.local": {"BOB1": {"n": 2}}}}`, nil)
		f := withRemote(e)
		if edus := f.take(); len(edus) != 0 {
			t.Fatalf("sent without federation: %+v", edus)
		}
		if err := e.k.FlushOutbox(ctx); err != nil {
			t.Fatal(err)
		}
		e.ok("PUT", pSend+"m.test/t2", "alice1", `{"messages": {"@rita:remote.test": {"*": {"n": 3}}, "@ron:remote.test": {"X": {"n": 4}}, "@zed:other.test": {"Z": {"n": 5}}}}`, nil)
		edus := f.take()
		if len(edus) != 3 {
			t.Fatalf("sent %d EDUs, want 3: %+v", len(edus), edus)
		}
		want := []struct{ dest, messages string }{
			{"remote.test", `{"@rita:remote.test":{"R1":{"n": 1}}}`},
			{"other.test", `{"@zed:other.test":{"Z":{"n": 5}}}`},
			{"remote.test", `{"@rita:remote.test":{"*":{"n": 3}},"@ron:remote.test":{"X":{"n": 4}}}`},
		}
		// In queueing order: the second request's servers by name.
		ids := map[string]bool{}
		for i, w := range want {
			u := edus[i]
			if u.typ != EDUDirectToDevice || fmt.Sprint(u.dests) != "["+w.dest+"]" || string(u.content["messages"]) != w.messages ||
				str(t, u.content["sender"]) != alice || str(t, u.content["type"]) != "m.test" {
				t.Errorf("EDU %d: %s to %v: %s", i, u.typ, u.dests, asJSON(u.content))
			}
			ids[str(t, u.content["message_id"])] = true
		}
		if len(ids) != 3 || ids[""] {
			t.Errorf("message IDs not distinct: %v", ids)
		}
		var left int
		if err := e.db.View(ctx, func(tx *storage.Tx) error {
			return tx.QueryRow(ctx, `SELECT COUNT(*) FROM to_device_outbox`).Scan(&left)
		}); err != nil || left != 0 {
			t.Fatalf("outbox holds %d (%v)", left, err)
		}
		// A flush with nothing queued sends nothing.
		if err := e.k.FlushOutbox(ctx); err != nil || len(f.take()) != 0 {
			t.Fatalf("empty flush: %v", err)
		}
	})
}

func TestReceiveToDevice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		subBob, subCarol := e.hub.Subscribe(bob), e.hub.Subscribe(carol)
		defer subBob.Close()
		defer subCarol.Close()
		edu := `{"sender": "@rita:remote.test", "type": "m.room_key_request", "message_id": "m1", "messages": {
			"@bob:test.local": {"BOB1": {"n": 1}, "NOPE": {"n": 2}},
			"@alice:test.local": {"*": {"n": 3}},
			"@zed:other.test": {"Z": {"n": 4}}
		}}`
		if err := e.k.ReceiveToDevice(ctx, "remote.test", []byte(edu)); err != nil {
			t.Fatal(err)
		}
		waitWake(t, subBob, "bob")
		noWake(t, subCarol, "carol")
		// The same message again (a retried transaction) is dropped.
		if err := e.k.ReceiveToDevice(ctx, "remote.test", []byte(edu)); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			user, device string
			want         []string
		}{
			{bob, "BOB1", []string{`{"content":{"n": 1},"sender":"@rita:remote.test","type":"m.room_key_request"}`}},
			{alice, "ALICE1", []string{`{"content":{"n": 3},"sender":"@rita:remote.test","type":"m.room_key_request"}`}},
			{alice, "ALICE2", []string{`{"content":{"n": 3},"sender":"@rita:remote.test","type":"m.room_key_request"}`}},
		} {
			if got := e.pending(tt.user, tt.device); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("%s %s: got %q, want %q", tt.user, tt.device, got, tt.want)
			}
		}

		pos := e.db.AuxPos()
		for _, bad := range []struct{ name, origin, edu string }{
			{"sender on another server", "evil.test", `{"sender": "@rita:remote.test", "type": "t", "message_id": "m2", "messages": {"@bob:test.local": {"BOB1": {}}}}`},
			{"no message_id", "remote.test", `{"sender": "@rita:remote.test", "type": "t", "messages": {"@bob:test.local": {"BOB1": {}}}}`},
			{"no type", "remote.test", `{"sender": "@rita:remote.test", "message_id": "m3", "messages": {"@bob:test.local": {"BOB1": {}}}}`},
			{"no messages", "remote.test", `{"sender": "@rita:remote.test", "type": "t", "message_id": "m4"}`},
			{"content not an object", "remote.test", `{"sender": "@rita:remote.test", "type": "t", "message_id": "m5", "messages": {"@bob:test.local": {"BOB1": {}, "X": 5}}}`},
			{"not JSON", "remote.test", `{"sender"`},
		} {
			if err := e.k.ReceiveToDevice(ctx, bad.origin, []byte(bad.edu)); err == nil {
				t.Errorf("%s: accepted", bad.name)
			}
		}
		if e.db.AuxPos() != pos {
			t.Errorf("bad EDUs stored something: aux %d -> %d", pos, e.db.AuxPos())
		}
	})
}

func TestRemoteDevicesChanged(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		withRemote(e)
		sub := e.hub.Subscribe(bob)
		defer sub.Close()
		since := e.db.AuxPos()
		if err := e.k.RemoteDevicesChanged(ctx, rita); err != nil {
			t.Fatal(err)
		}
		waitWake(t, sub, "bob")
		changed, _, err := e.k.DeviceListChanges(ctx, bob, since, e.db.AuxPos())
		if err != nil || fmt.Sprint(changed) != "[@rita:remote.test]" {
			t.Fatalf("bob's changes: %v %v", changed, err)
		}
		changed, _, err = e.k.DeviceListChanges(ctx, carol, since, e.db.AuxPos())
		if err != nil || len(changed) != 0 {
			t.Fatalf("carol shares no room with rita, yet sees %v %v", changed, err)
		}
		// A user sharing no room with anyone local changes nothing.
		e.k.deps.SharedUsers = func(_ context.Context, user string) ([]string, error) { return []string{user}, nil }
		pos := e.db.AuxPos()
		if err := e.k.RemoteDevicesChanged(ctx, "@ursula:remote.test"); err != nil || e.db.AuxPos() != pos {
			t.Fatalf("unrelated user: %v, aux %d -> %d", err, pos, e.db.AuxPos())
		}
		if err := e.k.RemoteDevicesChanged(ctx, alice); err == nil {
			t.Fatal("a local user accepted as remote")
		}
	})
}

func TestRemoteKeysQueryAndClaim(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		f := withRemote(e)
		ritaKP := newKeyPair(t)
		ritaDev := deviceKeysText(t, rita, "R1", ritaKP)
		master := crossKeyText(rita, "master", newKeyPair(t))
		// remote.test answers for rita, and also tries to answer for a
		// user of another server and with a device object of someone
		// else: both are dropped.
		f.query = fmt.Sprintf(`{"device_keys": {
			"@rita:remote.test": {"R1": %s, "R2": %s},
			"@bob:test.local": {"BOB1": %s}
		}, "master_keys": {"@rita:remote.test": %s, "@bob:test.local": %s}}`,
			ritaDev, deviceKeysText(t, "@ron:remote.test", "R2", ritaKP), ritaDev, master, master)
		dk := deviceKeysText(t, bob, "BOB1", newKeyPair(t))
		e.ok("POST", pUpload, "bob1", `{"device_keys": `+string(dk)+`}`, nil)

		start := time.Now()
		var q struct {
			queryAnswer
			Failures map[string]map[string]any `json:"failures"`
		}
		e.ok("POST", pQuery, "alice1", `{"timeout": 300, "device_keys": {
			"@rita:remote.test": [], "@sam:down.test": [], "@tom:slow.test": ["T"], "@bob:test.local": []}}`, &q)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the query took %v despite a 300 ms timeout", d)
		}
		if got := string(q.DeviceKeys[rita]["R1"]); got != string(ritaDev) {
			t.Errorf("rita's device: %s", got)
		}
		if len(q.DeviceKeys[rita]) != 1 || len(q.DeviceKeys[bob]) != 1 || q.DeviceKeys[bob]["BOB1"] == nil {
			t.Errorf("device_keys: %v", q.DeviceKeys)
		}
		if string(q.Master[rita]) != master || q.Master[bob] != nil {
			t.Errorf("master_keys: %v", q.Master)
		}
		if len(q.Failures) != 2 || q.Failures["down.test"] == nil || q.Failures["slow.test"] == nil {
			t.Errorf("failures: %v", q.Failures)
		}
		f.mu.Lock()
		body := f.bodies["slow.test"]
		f.mu.Unlock()
		if body != `{"device_keys":{"@tom:slow.test":["T"]}}` {
			t.Errorf("asked slow.test %s", body)
		}

		f.claim = `{"one_time_keys": {
			"@rita:remote.test": {"R1": {"signed_curve25519:AAA": {"key": "k"}}, "R9": {"signed_curve25519:B": "x"}},
			"@bob:test.local": {"BOB1": {"signed_curve25519:C": "y"}}
		}}`
		var c struct {
			OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
			Failures    map[string]json.RawMessage                       `json:"failures"`
		}
		e.ok("POST", pClaim, "alice1", `{"timeout": 300, "one_time_keys": {
			"@rita:remote.test": {"R1": "signed_curve25519"}, "@sam:down.test": {"S": "signed_curve25519"}}}`, &c)
		if got := string(c.OneTimeKeys[rita]["R1"]["signed_curve25519:AAA"]); got != `{"key": "k"}` {
			t.Errorf("rita's claimed key: %q", got)
		}
		if len(c.OneTimeKeys) != 1 || len(c.OneTimeKeys[rita]) != 1 {
			t.Errorf("one_time_keys: %v", c.OneTimeKeys)
		}
		if len(c.Failures) != 1 || c.Failures["down.test"] == nil {
			t.Errorf("failures: %v", c.Failures)
		}
		f.mu.Lock()
		body = f.bodies["remote.test"]
		f.mu.Unlock()
		if body != `{"one_time_keys":{"@rita:remote.test":{"R1":"signed_curve25519"}}}` {
			t.Errorf("asked remote.test %s", body)
		}
	})
}
