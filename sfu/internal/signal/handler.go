package signal

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/internal/pionlog"
)

// Params are the connection options a client puts in the /rtc query.
type Params struct {
	AutoSubscribe bool
	// Reconnect asks to resume the session of ParticipantSID (LiveKit's
	// "reconnect=1&sid=PA_…").
	Reconnect      bool
	ParticipantSID string
	Protocol       int
	SDK, Version   string
	Attributes     map[string]string
}

// ParseParams reads the /rtc query as LiveKit's SDKs write it.
func ParseParams(q url.Values) (Params, error) {
	p := Params{
		AutoSubscribe:  q.Get("auto_subscribe") != "0" && q.Get("auto_subscribe") != "false",
		Reconnect:      q.Get("reconnect") == "1" || q.Get("reconnect") == "true",
		ParticipantSID: q.Get("sid"),
		SDK:            q.Get("sdk"),
		Version:        q.Get("version"),
	}
	if s := q.Get("protocol"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return p, fmt.Errorf("protocol: %w", err)
		}
		p.Protocol = n
	}
	if s := q.Get("attributes"); s != "" {
		b, err := base64.URLEncoding.DecodeString(s)
		if err != nil {
			return p, fmt.Errorf("attributes: %w", err)
		}
		if err := json.Unmarshal(b, &p.Attributes); err != nil {
			return p, fmt.Errorf("attributes: %w", err)
		}
	}
	if q.Get("join_request") != "" {
		// Single peer connection mode (protocol 16+ "join_request"): not
		// offered by this server; SDKs default to two connections.
		return p, errors.New("join_request (single peer connection mode) is not supported")
	}
	return p, nil
}

// Session receives one connection's requests. The reader loop calls
// HandleRequest serially and ConnClosed once when the connection ends.
type Session interface {
	HandleRequest(req *livekit.SignalRequest)
	ConnClosed(c *Conn)
}

// Joiner admits connections: Join sends the first message (JoinResponse,
// ReconnectResponse) with c.Send and returns the session that will get
// the client's requests; on error the connection is closed.
type Joiner interface {
	Join(c *Conn, claims *Claims, p Params) (Session, error)
}

// Checker is implemented by a Joiner that can refuse a connection before
// the WebSocket upgrade, so that the client (and /rtc/validate, which
// SDKs ask after a failed connect) gets an HTTP status: livekit-server
// answers 404 for a room it may not create and 503 when full
// (rtcservice.go validateInternal). Join still decides: the answer may
// change before it runs.
type Checker interface {
	Check(claims *Claims, p Params) error
}

// RefusedError is a Checker's refusal: the HTTP status and the reason.
type RefusedError struct {
	Status int
	Reason string
}

func (e *RefusedError) Error() string { return e.Reason }

// JoinError carries a leave to send when Join refuses.
type JoinError struct {
	Leave *livekit.LeaveRequest
	Err   error
}

func (e *JoinError) Error() string { return e.Err.Error() }
func (e *JoinError) Unwrap() error { return e.Err }

// Handler serves "/rtc" and "/rtc/validate".
type Handler struct {
	apiKey, apiSecret string
	joiner            Joiner
	log               *slog.Logger
	conn              ConnConfig
	upgrader          websocket.Upgrader
	lim               *pionlog.Limiter
}

// maxFrame bounds one signalling frame: SDP offers with many tracks are
// some tens of kilobytes.
const maxFrame = 1 << 20

// maxMalformed is how many bad frames a client may send before it is
// closed.
const maxMalformed = 16

// NewHandler returns the signalling handler.
func NewHandler(apiKey, apiSecret string, joiner Joiner, cfg ConnConfig, log *slog.Logger) *Handler {
	cfg.defaults()
	return &Handler{
		apiKey: apiKey, apiSecret: apiSecret, joiner: joiner, log: log, conn: cfg,
		upgrader: websocket.Upgrader{
			ReadBufferSize: 4096, WriteBufferSize: 4096,
			// Browsers' SDKs connect from the web app's origin, which is
			// not this server's; the token is the authorisation.
			CheckOrigin: func(*http.Request) bool { return true },
		},
		lim: pionlog.NewLimiter(5, 10*time.Second, nil),
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/rtc", "/rtc/", "rtc":
		h.serveRTC(w, r)
	case "/rtc/validate", "rtc/validate":
		h.serveValidate(w, r)
	default:
		http.NotFound(w, r)
	}
}

// serveValidate answers as livekit-server's /rtc/validate: 200 "success",
// or 401 with the reason for a bad token, 400 for bad parameters.
func (h *Handler) serveValidate(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := h.check(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("success"))
}

// check verifies the token and the query of an /rtc request; on failure
// it has answered (401 or 400) and ok is false. Attributes in the query
// need the canUpdateOwnMetadata grant and are merged into the token's,
// an empty value never removing one, as livekit-server does
// (rtcservice.go validateInternal): without the grant a client could
// give itself attributes the token service never vouched for.
func (h *Handler) check(w http.ResponseWriter, r *http.Request) (*Claims, Params, bool) {
	claims, err := Verify(TokenFromRequest(r), h.apiKey, h.apiSecret)
	if err != nil {
		unauthorized(w, err)
		return nil, Params{}, false
	}
	params, err := ParseParams(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, Params{}, false
	}
	if len(params.Attributes) > 0 {
		if !claims.CanUpdateOwnMetadata {
			unauthorized(w, fmt.Errorf("%w: permissions denied: attributes need canUpdateOwnMetadata", ErrUnauthorized))
			return nil, Params{}, false
		}
		merged := maps.Clone(claims.Attributes)
		if merged == nil {
			merged = map[string]string{}
		}
		for k, v := range params.Attributes {
			if v != "" {
				merged[k] = v
			}
		}
		claims.Attributes = merged
	}
	if c, ok := h.joiner.(Checker); ok {
		if err := c.Check(claims, params); err != nil {
			status := http.StatusForbidden
			var re *RefusedError
			if errors.As(err, &re) {
				status = re.Status
			}
			http.Error(w, err.Error(), status)
			return nil, Params{}, false
		}
	}
	return claims, params, true
}

func (h *Handler) serveRTC(w http.ResponseWriter, r *http.Request) {
	claims, params, ok := h.check(w, r)
	if !ok {
		return
	}
	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	ws.SetReadLimit(maxFrame)
	log := h.log.With("room", claims.Room, "identity", claims.Identity)
	c := newConn(ws, h.conn, log)
	sess, err := h.joiner.Join(c, claims, params)
	if err != nil {
		var je *JoinError
		leave := &livekit.LeaveRequest{Reason: livekit.DisconnectReason_JOIN_FAILURE}
		if errors.As(err, &je) && je.Leave != nil {
			leave = je.Leave
		}
		log.Info("join refused", "err", err)
		c.Close(leave)
		<-c.Done()
		return
	}
	h.readLoop(c, sess, log)
	sess.ConnClosed(c)
	c.Close(nil)
	<-c.Done()
}

func (h *Handler) readLoop(c *Conn, sess Session, log *slog.Logger) {
	extend := func() { _ = c.ws.SetReadDeadline(time.Now().Add(c.cfg.PingTimeout)) }
	extend()
	c.ws.SetPongHandler(func(string) error { extend(); return nil })
	malformed := 0
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		extend()
		req := &livekit.SignalRequest{}
		switch mt {
		case websocket.BinaryMessage:
			err = proto.Unmarshal(data, req)
		case websocket.TextMessage:
			c.setText()
			err = protojson.Unmarshal(data, req)
		}
		if err == nil && req.Message == nil {
			err = errors.New("empty signal request")
		}
		if err != nil {
			malformed++
			if ok, n := h.lim.Allow("malformed"); ok {
				log.Info("malformed signal request", "err", err, "suppressed", n)
			}
			if malformed > maxMalformed {
				c.Close(&livekit.LeaveRequest{Reason: livekit.DisconnectReason_UNKNOWN_REASON})
				return
			}
			_ = c.Send(&livekit.SignalResponse{Message: &livekit.SignalResponse_RequestResponse{
				RequestResponse: &livekit.RequestResponse{
					Reason:  livekit.RequestResponse_INVALID_REQUEST,
					Message: "malformed signal request",
				},
			}})
			continue
		}
		sess.HandleRequest(req)
	}
}

// unauthorized answers 401 with the reason alone: the SDKs prefix
// "unauthorized: " themselves.
func unauthorized(w http.ResponseWriter, err error) {
	http.Error(w, strings.TrimPrefix(err.Error(), ErrUnauthorized.Error()+": "), http.StatusUnauthorized)
}
