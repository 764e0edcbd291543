package syncer

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// Filters looks up stored filters by ID.
type Filters interface {
	Filter(ctx context.Context, userID, filterID string) (json.RawMessage, error)
}

// Register adds GET /sync.
func (e *Engine) Register(rt *endpoint.Router) {
	rt.Authed("GET /_matrix/client/v3/sync", e.handleSync)
}

// ParseRequest reads /sync's query parameters (Client-Server API, "GET
// /_matrix/client/v3/sync") into a Request. The realtime connection's sync
// channel takes the same parameters.
func (e *Engine) ParseRequest(ctx context.Context, s *endpoint.Session, since, filter, fullState, timeout string) (Request, error) {
	req := Request{UserID: s.UserID, DeviceID: s.DeviceID}
	if since != "" {
		t, err := stream.ParseToken(since)
		if err != nil {
			return req, mxerr.InvalidParam("Unknown or malformed since token")
		}
		req.Since = &t
	}
	if filter != "" {
		raw := []byte(filter)
		if !strings.HasPrefix(strings.TrimSpace(filter), "{") {
			if e.deps.Filters == nil {
				return req, mxerr.NotFound("No such filter")
			}
			var err error
			if raw, err = e.deps.Filters.Filter(ctx, s.UserID, filter); err != nil {
				return req, err
			}
		}
		f, err := parseFilter(raw)
		if err != nil {
			return req, mxerr.BadJSON("filter is not a valid filter: " + err.Error())
		}
		req.Filter = f
	}
	switch fullState {
	case "", "false":
	case "true":
		req.FullState = true
	default:
		return req, mxerr.InvalidParam("full_state must be true or false")
	}
	if timeout != "" {
		ms, err := strconv.ParseInt(timeout, 10, 64)
		if err != nil || ms < 0 {
			return req, mxerr.InvalidParam("timeout must be a non-negative integer of milliseconds")
		}
		req.Timeout = time.Duration(min(ms, int64(e.cfg.MaxTimeout/time.Millisecond))) * time.Millisecond
	}
	return req, nil
}

func (e *Engine) handleSync(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	q := r.URL.Query()
	req, err := e.ParseRequest(r.Context(), s, q.Get("since"), q.Get("filter"), q.Get("full_state"), q.Get("timeout"))
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if req.StateAfter, err = ParseStateAfter(q); err != nil {
		endpoint.Fail(w, err)
		return
	}
	resp, _, err := e.Sync(r.Context(), req)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		endpoint.Fail(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, AppendResponse(make([]byte, 0, 4096), resp))
}
