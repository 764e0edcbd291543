package signalling

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/rtcauth"
)

// RTCConfig configures MatrixRTC support: the SFU token service at
// /livekit/jwt (lk-jwt-service's protocol, see package rtcauth) and its
// advertisement as the server's LiveKit focus (MSC4143 rtc_foci and
// rtc/transports).
type RTCConfig struct {
	// APIKey and APISecret sign SFU access tokens; the SFU verifies them
	// with the same pair. An empty secret disables the token service.
	APIKey, APISecret string
	// SFUURL is the ws(s):// URL of the SFU handed out with tokens; empty
	// derives it from the public base URL or the request:
	// ws(s)://<host>/livekit/sfu.
	SFUURL string
	// TokenTTL is how long SFU tokens stay valid; 0 means an hour, as
	// lk-jwt-service.
	TokenTTL time.Duration
	// Disabled turns the token service and its advertisement off.
	Disabled bool
}

// OpenIDVerifier asks another server who one of its OpenID tokens
// belongs to (Server-Server API, GET /_matrix/federation/v1/openid/userinfo).
// *federation.Federation implements it.
type OpenIDVerifier interface {
	OpenIDUserInfo(ctx context.Context, server, token string) (userID string, err error)
}

// rtcSide is the MatrixRTC part of Signalling.
type rtcSide struct {
	db    *storage.DB
	rooms *rooms.Service
	store *rtcauth.Store
	// svc is the token service; nil when disabled.
	svc *rtcauth.Service
}

// newRTC builds the OpenID token store and, unless disabled, the token
// service.
func (s *Signalling) newRTC(cfg Config, deps Deps) error {
	s.openid = rtcauth.NewOpenIDStore(deps.DB, deps.Now)
	s.rtc = rtcSide{db: deps.DB, rooms: deps.Rooms, store: rtcauth.NewStore(deps.DB)}
	if cfg.RTC.Disabled || cfg.RTC.APISecret == "" {
		return nil
	}
	var remote func(ctx context.Context, server, token string) (string, error)
	if deps.OpenID != nil {
		remote = deps.OpenID.OpenIDUserInfo
	}
	svc, err := rtcauth.New(rtcauth.Config{
		ServerName: cfg.ServerName, APIKey: cfg.RTC.APIKey, APISecret: cfg.RTC.APISecret,
		SFUURL: cfg.RTC.SFUURL, PublicBaseURL: cfg.PublicBaseURL, TokenTTL: cfg.RTC.TokenTTL,
		Limit: cfg.RateLimits.Send,
	}, rtcauth.Deps{
		OpenID: s.openid, Remote: remote, Membership: s.feed.index.Membership, Store: s.rtc.store,
		Logger: deps.Logger.With("component", "rtcauth"), Now: deps.Now,
	})
	if err != nil {
		return fmt.Errorf("signalling: %w", err)
	}
	s.rtc.svc = svc
	return nil
}

// registerRTC adds the token service and MSC4143's transports discovery.
func (s *Signalling) registerRTC(rt *endpoint.Router, mux server.Router) {
	if s.rtc.svc != nil {
		s.rtc.svc.Register(mux)
	}
	rt.Authed("GET /_matrix/client/v1/rtc/transports", s.rtcTransports)
	rt.Authed("GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports", s.rtcTransports)
}

// rtcFoci lists the server's MatrixRTC foci for a client API at base:
// the built-in SFU through its token service (MSC4143 with MSC4195's
// livekit type); nil when disabled.
func (s *Signalling) rtcFoci(base string) []map[string]string {
	if s.rtc.svc == nil {
		return nil
	}
	return []map[string]string{{"type": "livekit", "livekit_service_url": base + rtcauth.Prefix}}
}

// rtcTransports is GET /_matrix/client/v1/rtc/transports (MSC4143,
// "Discovery of RTC transports"): the same foci as the well-known.
func (s *Signalling) rtcTransports(w http.ResponseWriter, r *http.Request, _ *endpoint.Session) {
	foci := s.rtcFoci(rtcauth.BaseURL(s.cfg.PublicBaseURL, r))
	if foci == nil {
		foci = []map[string]string{}
	}
	endpoint.Write(w, map[string]any{"rtc_transports": foci})
}

// CallMember is one device's live membership of a room's call.
type CallMember struct {
	UserID, DeviceID string
	// MemberID is m.rtc.member's member.id (membershipID in the legacy
	// form).
	MemberID string
	// Application, CallID and SlotID say which call ("m.call", "" for
	// the room's call).
	Application, CallID, SlotID string
	// FocusActive is the focus (SFU) the device publishes to, as JSON.
	FocusActive json.RawMessage
	// CreatedTS and ExpiresTS are in milliseconds since the epoch.
	CreatedTS, ExpiresTS int64
}

// ActiveCallMembers lists the live call memberships of roomID in its
// current state (org.matrix.msc3401.call.member and m.rtc.member): not
// left, not expired, and sent by a user still joined to the room
// (MSC4143, "Membership"). It is what the operator page shows.
func (s *Signalling) ActiveCallMembers(ctx context.Context, roomID string) ([]CallMember, error) {
	var ids []string
	err := s.rtc.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		ids, err = tx.Strings(ctx, `SELECT event_id FROM current_state WHERE room_id = ? AND type IN (?, ?)`,
			roomID, rtcauth.TypeCallMember, rtcauth.TypeRTCMember)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("signalling: call members of %s: %w", roomID, err)
	}
	evs, err := s.stateEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := []CallMember{}
	for _, m := range rtcauth.LiveMemberships(evs, s.now()) {
		if mem, err := s.feed.index.Membership(ctx, roomID, m.UserID); err != nil {
			return nil, err
		} else if mem != "join" {
			continue
		}
		out = append(out, CallMember{UserID: m.UserID, DeviceID: m.DeviceID, MemberID: m.MemberID,
			Application: m.Application, CallID: m.CallID, SlotID: m.SlotID, FocusActive: m.FocusActive,
			CreatedTS: m.CreatedTS, ExpiresTS: m.ExpiresTS})
	}
	return out, nil
}

// stateEvents loads stored events as rtcauth reads them.
func (s *Signalling) stateEvents(ctx context.Context, ids []string) ([]rtcauth.StateEvent, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	recs, err := s.rtc.db.Events(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("signalling: load state events: %w", err)
	}
	out := make([]rtcauth.StateEvent, 0, len(ids))
	for _, id := range ids {
		rec := recs[id]
		if rec == nil || rec.StateKey == nil {
			continue
		}
		var ev struct {
			Sender  string          `json:"sender"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(rec.JSON, &ev); err != nil {
			return nil, fmt.Errorf("signalling: stored event %s: %w", id, err)
		}
		out = append(out, rtcauth.StateEvent{Type: rec.Type, StateKey: *rec.StateKey, Sender: ev.Sender,
			OriginServerTS: rec.OriginServerTS, Content: ev.Content})
	}
	return out, nil
}
