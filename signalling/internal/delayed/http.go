package delayed

import (
	"fmt"
	"net"
	"net/http"
	"slices"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// prefix is MSC4140's unstable prefix, the one Synapse, matrix-js-sdk
// (Element Call) and mautrix-go use.
const prefix = "/_matrix/client/unstable/org.matrix.msc4140"

// The management actions (MSC4140, "Managing scheduled delayed events").
const (
	actionRestart = "restart"
	actionCancel  = "cancel"
	actionSend    = "send"
)

// Register adds the management and listing endpoints to rt. Both the
// older form (POST .../delayed_events/{delay_id} with {"action": ...},
// which matrix-js-sdk and mautrix-go send) and the per-action paths of the
// current MSC text are served.
func (s *Service) Register(rt *endpoint.Router) {
	rt.Public("POST "+prefix+"/delayed_events/{delayId}", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Action *string `json:"action"`
		}
		if err := endpoint.Decode(r, 0, &body); err != nil {
			endpoint.Fail(w, err)
			return
		}
		if body.Action == nil {
			endpoint.Fail(w, mxerr.MissingParam("'action' is missing"))
			return
		}
		s.manage(w, r, rt, *body.Action)
	})
	rt.Public("POST "+prefix+"/delayed_events/{delayId}/{action}", func(w http.ResponseWriter, r *http.Request) {
		switch a := r.PathValue("action"); a {
		case actionRestart, actionCancel, actionSend:
			s.manage(w, r, rt, a)
		default:
			endpoint.Fail(w, mxerr.Unrecognized(http.StatusNotFound))
		}
	})
	rt.Authed("GET "+prefix+"/delayed_events", s.list)
}

// manage runs action on the path's delay ID. With an access token the
// caller must own the event (another user's ID is 404, like an unknown
// one); without, the ID itself is the capability (MSC4140, "Delegating
// delayed events").
func (s *Service) manage(w http.ResponseWriter, r *http.Request, rt *endpoint.Router, action string) {
	owner, key := "", "ip:"+clientHost(r)
	if hasToken(r) {
		sess, err := rt.Session(r)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		owner, key = sess.UserID, "user:"+sess.UserID
	}
	if err := s.limiter.Check(key); err != nil {
		endpoint.Fail(w, err)
		return
	}
	ctx, id := r.Context(), r.PathValue("delayId")
	var err error
	switch action {
	case actionRestart:
		err = s.restart(ctx, id, owner)
	case actionCancel:
		err = s.cancel(ctx, id, owner)
	case actionSend:
		err = s.sendNow(ctx, id, owner)
	default:
		err = mxerr.InvalidParam(fmt.Sprintf("'action' is not one of '%s', '%s', '%s'", actionCancel, actionRestart, actionSend))
	}
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

// list is GET .../delayed_events: the caller's scheduled events, in the
// delayed_events key Synapse answers with (mautrix-go also reads
// "scheduled", and would list an event twice if both were sent). Finalised
// events are not kept, so status=finalised lists nothing.
func (s *Service) list(w http.ResponseWriter, r *http.Request, sess *endpoint.Session) {
	if err := s.limiter.Check("user:" + sess.UserID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	q := r.URL.Query()
	if st := q["status"]; len(st) > 0 && !slices.Contains(st, "scheduled") {
		endpoint.Write(w, map[string]any{"delayed_events": []Scheduled{}})
		return
	}
	evs, err := s.List(r.Context(), sess.UserID, q["delay_id"])
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]any{"delayed_events": evs})
}

// hasToken reports whether r carries an access token in either place
// endpoint.AccessToken looks.
func hasToken(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.URL.Query().Has("access_token")
}

// clientHost is the peer's address without the port.
func clientHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}
