package signalling

import (
	"net/http"
	"sort"
	"time"

	"github.com/plexus-chat/plexus/internal/turncred"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// registerDiscovery adds the endpoints clients call before anything else:
// server discovery, capabilities and TURN credentials.
func (s *Signalling) registerDiscovery(rt *endpoint.Router) {
	rt.Public("GET /.well-known/matrix/client", s.wellKnown)
	rt.Authed("GET /_matrix/client/v3/capabilities", s.capabilities)
	rt.Authed("GET /_matrix/client/v3/voip/turnServer", s.turnServer)
}

// wellKnown answers Client-Server API, "Well-known URIs": where the
// client API lives. Without a configured public URL it is the URL the
// request came in on, which is right for a server reached directly.
func (s *Signalling) wellKnown(w http.ResponseWriter, r *http.Request) {
	base := s.cfg.PublicBaseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	body := map[string]any{"m.homeserver": map[string]string{"base_url": base}}
	// MSC4143: the server's own MatrixRTC focus (rtc.go).
	if foci := s.rtcFoci(base); foci != nil {
		body["org.matrix.msc4143.rtc_foci"] = foci
	}
	endpoint.Write(w, body)
}

// capabilities answers Client-Server API, "Capabilities negotiation".
func (s *Signalling) capabilities(w http.ResponseWriter, _ *http.Request, _ *endpoint.Session) {
	available := map[string]string{}
	versions := rooms.SupportedVersions()
	sort.Strings(versions)
	for _, v := range versions {
		available[v] = "stable"
	}
	endpoint.Write(w, map[string]any{"capabilities": map[string]any{
		"m.change_password": map[string]bool{"enabled": true},
		"m.room_versions":   map[string]any{"default": rooms.DefaultVersion, "available": available},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": false},
	}})
}

// turnServer answers Client-Server API, "GET
// /_matrix/client/v3/voip/turnServer" with TURN REST credentials (the
// username "<expiry>:<user_id>", the password an HMAC of it under the
// shared secret) that the embedded relay and coturn both accept. With no
// relay configured the answer is an empty object, which clients read as
// "no TURN server".
func (s *Signalling) turnServer(w http.ResponseWriter, _ *http.Request, sess *endpoint.Session) {
	if len(s.cfg.TURN.Secret) == 0 || len(s.cfg.TURN.URIs) == 0 {
		endpoint.Write(w, map[string]any{})
		return
	}
	ttl := s.cfg.TURN.TTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	user, pass := turncred.Mint(s.cfg.TURN.Secret, sess.UserID, ttl, s.now())
	endpoint.Write(w, map[string]any{
		"username": user,
		"password": pass,
		"uris":     s.cfg.TURN.URIs,
		"ttl":      int64(ttl / time.Second),
	})
}
