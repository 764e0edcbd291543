package status

import (
	"net/http"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Paths of the operator endpoints: Plexus's own admin API, read by the
// web client's operator page like any other client would.
const (
	PathStatus  = "/_plexus/admin/v1/status"
	PathHistory = "/_plexus/admin/v1/status/history"
)

// Register adds the operator endpoints to rt. Both are for server
// admins only: anyone else gets 403 M_FORBIDDEN, as Synapse's admin API
// answers.
func (s *Service) Register(rt *endpoint.Router) {
	rt.Authed("GET "+PathStatus, adminOnly(func(w http.ResponseWriter, r *http.Request) {
		endpoint.Write(w, s.Snapshot(r.Context()))
	}))
	rt.Authed("GET "+PathHistory, adminOnly(func(w http.ResponseWriter, _ *http.Request) {
		endpoint.Write(w, s.History())
	}))
}

func adminOnly(h http.HandlerFunc) endpoint.Handler {
	return func(w http.ResponseWriter, r *http.Request, sess *endpoint.Session) {
		if !sess.Admin {
			endpoint.Fail(w, mxerr.Forbidden("You are not a server admin"))
			return
		}
		h(w, r)
	}
}
