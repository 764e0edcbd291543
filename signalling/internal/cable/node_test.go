package cable

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// harnessDir holds the Node consumer script and its pinned packages,
// installed by .ci/node.sh.
const harnessDir = "testdata/node"

// nodeOrSkip finds node and the harness's packages. Missing, the test
// fails under CI (CI=true) and is skipped elsewhere.
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(harnessDir, "node_modules", "@rails", "actioncable", "package.json"))
	}
	if err != nil {
		msg := "the Node ActionCable harness is not installed (run bash .ci/node.sh): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node
}

// TestActionCableJSConsumer runs the stock @rails/actioncable consumer
// (in Node, with the ws package as its WebSocket) against the server: it
// subscribes to a room channel and receives an event another user sends.
func TestActionCableJSConsumer(t *testing.T) {
	node := nodeOrSkip(t)
	h, _ := newFakeHarness(t, Config{})
	room := identifier(map[string]string{"channel": RoomChannel, "room_id": fakeRoom})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "consumer.js", h.wsURL+"?access_token=tok-alice", room)
	cmd.Dir = harnessDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	type line struct {
		Event    string `json:"event"`
		Protocol string `json:"protocol"`
		Message  struct {
			Type     string          `json:"type"`
			RoomID   string          `json:"room_id"`
			Timeline json.RawMessage `json:"timeline"`
		} `json:"message"`
	}
	lines := bufio.NewScanner(stdout)
	next := func() line {
		t.Helper()
		if !lines.Scan() {
			_ = cmd.Wait()
			t.Fatalf("consumer ended early: %v\nstderr: %s", lines.Err(), stderr.String())
		}
		var l line
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("consumer printed %q", lines.Text())
		}
		return l
	}

	if l := next(); l.Event != "connected" || l.Protocol != Subprotocol {
		t.Fatalf("first line %+v, want connected over %s", l, Subprotocol)
	}
	// The subscription's first message (the room as it is), then an
	// event pushed by bob's send.
	if l := next(); l.Event != "received" || l.Message.Type != "room" || l.Message.RoomID != fakeRoom {
		t.Fatalf("first message %+v", l)
	}
	bob := h.dial("tok-bob")
	bob.subscribe(room)
	var m roomMsg
	bob.message(room, &m)
	bob.perform(room, actSendMessage, map[string]any{"content": map[string]string{"msgtype": "m.text", "body": "hello node"}, "txn_id": "n1"})

	l := next()
	var tl struct{ Events []json.RawMessage }
	if err := json.Unmarshal(l.Message.Timeline, &tl); err != nil || l.Event != "received" {
		t.Fatalf("line %+v", l)
	}
	if b := timelineBodies(t, tl.Events); len(b) != 1 || b[0] != "hello node" {
		t.Fatalf("node consumer received %v", b)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consumer: %v\nstderr: %s", err, stderr.String())
	}
}
