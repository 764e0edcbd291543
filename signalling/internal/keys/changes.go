package keys

import (
	"context"
	"fmt"
	"net/http"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// DeviceListChanges returns the users sharing a room with userID (userID
// included) whose devices or cross-signing keys changed at aux positions
// in (since, upto], and the users whose user-signing signatures only
// userID sees (Client-Server API, "Extensions to /sync", device_lists).
//
// left is always empty here: which users stopped sharing every room with
// userID is a membership question for the /sync engine, which knows the
// membership changes in the same range.
func (k *Keys) DeviceListChanges(ctx context.Context, userID string, since, upto int64) (changed, left []string, err error) {
	if since >= upto {
		return []string{}, []string{}, nil
	}
	type row struct{ user, viewer string }
	var rows []row
	err = k.db.View(ctx, func(tx *storage.Tx) error {
		rs, err := tx.Query(ctx, `SELECT DISTINCT user_id, viewer FROM e2e_device_list_changes
			WHERE pos > ? AND pos <= ? AND (viewer = '' OR viewer = ?)`, since, upto, userID)
		if err != nil {
			return fmt.Errorf("keys: read device list changes: %w", err)
		}
		defer rs.Close()
		for rs.Next() {
			var r row
			if err := rs.Scan(&r.user, &r.viewer); err != nil {
				return fmt.Errorf("keys: read device list changes: %w", err)
			}
			rows = append(rows, r)
		}
		return rs.Err()
	})
	if err != nil || len(rows) == 0 {
		return []string{}, []string{}, err
	}
	shared, err := k.sharedUsers(ctx, userID)
	if err != nil {
		return nil, nil, err
	}
	sharing := make(map[string]bool, len(shared))
	for _, u := range shared {
		sharing[u] = true
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if (r.viewer == userID || sharing[r.user]) && !seen[r.user] {
			seen[r.user] = true
			changed = append(changed, r.user)
		}
	}
	return sortedStrings(changed), []string{}, nil
}

// handleChanges is GET /keys/changes (Client-Server API, "Key management
// API"): the device list changes between two sync tokens.
func (k *Keys) handleChanges(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	q := r.URL.Query()
	if !q.Has("from") {
		endpoint.Fail(w, mxerr.MissingParam("Missing string query parameter 'from'"))
		return
	}
	from, err := stream.ParseToken(q.Get("from"))
	if err != nil {
		endpoint.Fail(w, mxerr.InvalidParam("Invalid 'from' token"))
		return
	}
	// Synapse treats "to" as optional and reads up to the present; the
	// spec calls it a hint. When given it bounds the range.
	upto := k.db.AuxPos()
	if q.Has("to") {
		to, err := stream.ParseToken(q.Get("to"))
		if err != nil {
			endpoint.Fail(w, mxerr.InvalidParam("Invalid 'to' token"))
			return
		}
		upto = min(to.Aux, upto)
	}
	changed, left, err := k.DeviceListChanges(r.Context(), s.UserID, from.Aux, upto)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	writeJSON(w, map[string][]string{"changed": changed, "left": left})
}
