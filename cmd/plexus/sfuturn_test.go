package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	pionturn "github.com/pion/turn/v4"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/internal/pionlog"
)

// TestSFUJoinHandsOutTURN runs plexus serve with the SFU and the TURN
// relay on loopback, joins a call over LiveKit signalling and takes the
// ICE servers from the JoinResponse: they name the embedded relay's
// listeners with fresh TURN REST credentials for the participant, those
// credentials allocate a relay on it over each transport offered, and a
// wrong password is refused.
func TestSFUJoinHandsOutTURN(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	const (
		serverName = "plexus.test"
		apiKey     = "plexus"
		secret     = "an-sfu-secret-of-at-least-thirty-two-characters"
		identity   = "@alice:plexus.test:DEVICE"
	)
	p := startPlexus(t, "--listen", "127.0.0.1:0", "--turn-listen", "127.0.0.1:0",
		"--sfu-listen-ip", "127.0.0.1", "--sfu-udp-port", "0", "--sfu-tcp-port", "0",
		"--federation-listen", "127.0.0.1:0", "--data", t.TempDir(), "--server-name", serverName,
		"--sfu-api-key", apiKey, "--sfu-api-secret", secret)
	addr, _ := p.waitLog(t, "listening")["addr"].(string)
	if addr == "" {
		t.Fatal("listening log has no addr")
	}
	p.waitLog(t, "SFU ready")

	yes := true
	grant := &auth.VideoGrant{RoomJoin: true, RoomCreate: true, Room: "call", CanPublish: &yes, CanSubscribe: &yes}
	tok, err := auth.NewAccessToken(apiKey, secret).SetIdentity(identity).SetVideoGrant(grant).SetValidFor(time.Hour).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+sfuPrefix+"/rtc?protocol=16&auto_subscribe=0", h)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	res := &livekit.SignalResponse{}
	if err := proto.Unmarshal(b, res); err != nil || res.GetJoin() == nil {
		t.Fatalf("first message %v (%v), want a JoinResponse", res, err)
	}
	servers := res.GetJoin().GetIceServers()
	if len(servers) != 1 {
		t.Fatalf("ICE servers %v, want the embedded relay", servers)
	}
	ice := servers[0]
	// TURN REST: "<expiry>:<user>", the participant's identity, expiring
	// in the future (24 h by default).
	expiry, user, ok := strings.Cut(ice.GetUsername(), ":")
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if !ok || err != nil || user != identity || ice.GetCredential() == "" {
		t.Fatalf("credentials %q / %q, want <expiry>:%s and a password", ice.GetUsername(), ice.GetCredential(), identity)
	}
	if left := time.Until(time.Unix(exp, 0)); left < time.Hour || left > 25*time.Hour {
		t.Fatalf("credentials expire in %v", left)
	}

	transports := map[string]bool{}
	for _, uri := range ice.GetUrls() {
		rest, ok := strings.CutPrefix(uri, "turn:")
		hostPort, transport, ok2 := strings.Cut(rest, "?transport=")
		if !ok || !ok2 {
			t.Fatalf("ICE server URL %q, want turn:host:port?transport=…", uri)
		}
		transports[transport] = true
		t.Run(transport, func(t *testing.T) {
			c := turnClient(t, transport, hostPort, ice.GetUsername(), ice.GetCredential())
			relay, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocating on %s with the join's credentials: %v", uri, err)
			}
			defer relay.Close()
			if a, ok := relay.LocalAddr().(*net.UDPAddr); !ok || a.Port == 0 {
				t.Fatalf("relayed address %v", relay.LocalAddr())
			}

			bad := turnClient(t, transport, hostPort, ice.GetUsername(), "not-"+ice.GetCredential())
			relay2, err := bad.Allocate()
			if err == nil {
				relay2.Close()
				t.Fatalf("%s allocated with a wrong password", uri)
			}
			t.Logf("wrong password: %v", err)
		})
	}
	if !transports["udp"] || !transports["tcp"] {
		t.Errorf("ICE server URLs %v, want the relay's UDP and TCP listeners", ice.GetUrls())
	}
}

// turnClient is pion's TURN client to hostPort over transport ("udp" or
// "tcp"), listening, with the given credentials.
func turnClient(t *testing.T, transport, hostPort, user, pass string) *pionturn.Client {
	t.Helper()
	var conn net.PacketConn
	switch transport {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	case "tcp":
		c, err := net.Dial("tcp", hostPort)
		if err != nil {
			t.Fatal(err)
		}
		conn = pionturn.NewSTUNConn(c)
	default:
		t.Fatal(errors.New("unknown transport " + transport))
	}
	t.Cleanup(func() { conn.Close() })
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: hostPort,
		TURNServerAddr: hostPort,
		Conn:           conn,
		Username:       user,
		Password:       pass,
		LoggerFactory:  &pionlog.Factory{Logger: slog.New(slog.DiscardHandler)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
