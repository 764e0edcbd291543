package signal

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// echo is a Joiner whose sessions answer pings and record requests.
type echo struct {
	got chan *livekit.SignalRequest
}

type echoSession struct {
	c *Conn
	e *echo
}

func (e *echo) Join(c *Conn, claims *Claims, p Params) (Session, error) {
	if claims.Identity == "refused" {
		return nil, &JoinError{Err: io.EOF, Leave: &livekit.LeaveRequest{Reason: livekit.DisconnectReason_JOIN_FAILURE}}
	}
	_ = c.Send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Join{Join: &livekit.JoinResponse{
		Participant: &livekit.ParticipantInfo{Identity: claims.Identity},
	}}})
	return &echoSession{c: c, e: e}, nil
}

func (s *echoSession) HandleRequest(req *livekit.SignalRequest) {
	if p := req.GetPing(); p != 0 {
		_ = s.c.Send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Pong{Pong: p}})
	}
	s.e.got <- req
}

func (s *echoSession) ConnClosed(*Conn) {}

func serve(t *testing.T) (*httptest.Server, *echo) {
	e := &echo{got: make(chan *livekit.SignalRequest, 64)}
	h := NewHandler(key, secret, e, ConnConfig{PingInterval: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs, e
}

func dial(t *testing.T, hs *httptest.Server, identity string) *websocket.Conn {
	t.Helper()
	tok := mint(t, key, secret, &auth.VideoGrant{RoomJoin: true, Room: "r"}, identity, time.Hour)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/rtc?access_token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	return ws
}

func readResponse(t *testing.T, ws *websocket.Conn) *livekit.SignalResponse {
	t.Helper()
	mt, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	res := &livekit.SignalResponse{}
	if mt == websocket.TextMessage {
		err = protojson.Unmarshal(b, res)
	} else {
		err = proto.Unmarshal(b, res)
	}
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestBinaryAndJSONFraming(t *testing.T) {
	hs, e := serve(t)
	ws := dial(t, hs, "alice")
	if readResponse(t, ws).GetJoin().GetParticipant().GetIdentity() != "alice" {
		t.Fatal("no join response")
	}
	b, _ := proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_Ping{Ping: 7}})
	if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatal(err)
	}
	if got := readResponse(t, ws).GetPong(); got != 7 {
		t.Fatalf("pong %d", got)
	}
	<-e.got
	// A client speaking protojson is answered in protojson.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"ping":"8"}`)); err != nil {
		t.Fatal(err)
	}
	if got := readResponse(t, ws).GetPong(); got != 8 {
		t.Fatalf("pong %d", got)
	}
}

func TestWebSocketPingsKeepAlive(t *testing.T) {
	hs, _ := serve(t)
	ws := dial(t, hs, "alice")
	pings := make(chan struct{}, 8)
	ws.SetPingHandler(func(string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for i := 0; i < 2; i++ {
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatal("no WebSocket ping from the server")
		}
	}
}

func TestRefusedJoinGetsLeave(t *testing.T) {
	hs, _ := serve(t)
	ws := dial(t, hs, "refused")
	if readResponse(t, ws).GetLeave().GetReason() != livekit.DisconnectReason_JOIN_FAILURE {
		t.Fatal("no leave")
	}
}

func TestValidate(t *testing.T) {
	hs, _ := serve(t)
	good := mint(t, key, secret, &auth.VideoGrant{RoomJoin: true, Room: "r"}, "alice", time.Hour)
	for _, tc := range []struct {
		name, query string
		header      string
		want        int
		body        string
	}{
		{"query token", "access_token=" + good, "", 200, "success"},
		{"bearer token", "", "Bearer " + good, 200, "success"},
		{"no token", "", "", 401, "missing access token"},
		{"single pc join request", "access_token=" + good + "&join_request=x", "", 400, "single peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", hs.URL+"/rtc/validate?"+tc.query, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.body) {
				t.Fatalf("%d %q", resp.StatusCode, b)
			}
		})
	}
}
