package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// Limits of one transaction (Server-Server API, "Transactions": "A
// transaction ... is limited to 50 PDUs and 100 EDUs").
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
)

// txnWait is a transaction being processed; a retry waits on done.
type txnWait struct {
	done chan struct{}
}

type txnBody struct {
	Origin         *string           `json:"origin"`
	OriginServerTS *int64            `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []struct {
		Type    string          `json:"edu_type"`
		Content json.RawMessage `json:"content"`
	} `json:"edus"`
}

// pduResult is one entry of the transaction response's "pdus" map: empty
// when the PDU was processed, with an error when it was not.
type pduResult struct {
	Error string `json:"error,omitempty"`
}

func (f *Federation) registerInbound(r server.Router) {
	r.Handle("PUT /_matrix/federation/v1/send/{txnId}", fedhttp.Wrap(f.auth, 0, f.handleSend))
}

// handleSend is PUT /_matrix/federation/v1/send/{txnId}.
func (f *Federation) handleSend(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	txnID := r.PathValue("txnId")
	// The body is JSON (the Authenticator parsed it to check the
	// signature); a Transaction is an object with origin,
	// origin_server_ts and pdus (Server-Server API, "Transactions").
	// Valid JSON of the wrong shape is M_BAD_JSON, as the Client-Server
	// API's "Common error codes" define it.
	if !isObject(req.Body) {
		server.WriteError(w, mxerr.BadJSON("The transaction is not a JSON object"))
		return
	}
	var body txnBody
	if err := json.Unmarshal(req.Body, &body); err != nil {
		server.WriteError(w, mxerr.BadJSON("The transaction is malformed: "+err.Error()))
		return
	}
	switch {
	case body.Origin == nil:
		server.WriteError(w, mxerr.MissingParam("origin is required"))
		return
	case *body.Origin != req.Origin:
		server.WriteError(w, mxerr.Forbidden("The transaction's origin is not the server that signed the request"))
		return
	case body.OriginServerTS == nil:
		server.WriteError(w, mxerr.MissingParam("origin_server_ts is required"))
		return
	case body.PDUs == nil:
		server.WriteError(w, mxerr.MissingParam("pdus is required"))
		return
	case len(body.PDUs) > maxTxnPDUs || len(body.EDUs) > maxTxnEDUs:
		server.WriteError(w, mxerr.BadJSON(fmt.Sprintf("A transaction holds at most %d PDUs and %d EDUs", maxTxnPDUs, maxTxnEDUs)))
		return
	}
	resp, err := f.receiveTxn(r.Context(), req.Origin, txnID, &body)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, resp)
}

// receiveTxn processes a transaction once: a replayed txnId gets the
// answer of the first, and a replay that arrives while the first is being
// processed waits for it.
func (f *Federation) receiveTxn(ctx context.Context, origin, txnID string, body *txnBody) ([]byte, error) {
	key := origin + "\x00" + txnID
	for {
		f.txnMu.Lock()
		wait, busy := f.txns[key]
		if !busy {
			wait = &txnWait{done: make(chan struct{})}
			f.txns[key] = wait
		}
		f.txnMu.Unlock()
		if !busy {
			break
		}
		select {
		case <-wait.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	defer func() {
		f.txnMu.Lock()
		w := f.txns[key]
		delete(f.txns, key)
		f.txnMu.Unlock()
		close(w.done)
	}()

	var prior []byte
	err := f.deps.DB.View(ctx, func(tx *storage.Tx) error {
		err := tx.QueryRow(ctx, `SELECT response FROM fed_received_txns WHERE origin = $1 AND txn_id = $2`, origin, txnID).Scan(&prior)
		if errors.Is(err, sqlNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if prior != nil {
		return prior, nil
	}

	results, err := f.receivePDUs(ctx, origin, body.PDUs)
	if err != nil {
		// Not an answer about the PDUs but a failure of ours (storage,
		// shutdown): the transaction is not recorded, so the sender's
		// retry processes it again.
		return nil, err
	}
	for _, e := range body.EDUs {
		if f.deps.EDUs == nil {
			break
		}
		if err := f.deps.EDUs.HandleEDU(ctx, origin, e.Type, e.Content); err != nil {
			f.log.Warn("EDU not handled", "origin", origin, "type", e.Type, "err", err)
		}
	}
	resp, err := json.Marshal(map[string]any{"pdus": results})
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		// The sender gave up; it retries the same transaction, which
		// finds its events already stored.
		return nil, ctx.Err()
	}
	err = f.deps.DB.Exec(ctx, `INSERT INTO fed_received_txns (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		origin, txnID, resp, time.Now().UnixMilli())
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// pduHead is what is read of a PDU before its room version is known.
type pduHead struct {
	RoomID string `json:"room_id"`
}

// receivePDUs runs a transaction's PDUs through their rooms' receive
// pipelines, room by room in the order they arrived, and answers per PDU,
// keyed by event ID. A PDU that is not a valid event is still named, by
// the reference hash its sender computed it from (rooms.ReferenceID), so
// the sender learns which of its events we refused; only a PDU that is
// not even a JSON object cannot be named, and is only logged. The error
// is for failures that are ours rather than the PDUs' (storage, shutdown):
// the transaction must then not be answered as processed.
func (f *Federation) receivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) (map[string]pduResult, error) {
	results := make(map[string]pduResult, len(pdus))
	byRoom := map[string][][]byte{}
	var order []string
	for _, p := range pdus {
		var h pduHead
		if err := json.Unmarshal(p, &h); err != nil || h.RoomID == "" {
			f.log.Info("dropped a PDU without a room", "origin", origin)
			f.refuseUnplaced(results, "", p, "no room_id")
			continue
		}
		if _, ok := byRoom[h.RoomID]; !ok {
			order = append(order, h.RoomID)
		}
		byRoom[h.RoomID] = append(byRoom[h.RoomID], p)
	}
	for _, roomID := range order {
		if err := f.receiveRoomPDUs(ctx, origin, roomID, byRoom[roomID], results); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// refuseUnplaced answers a PDU that never reached a room's pipeline with
// an error, naming it as its room's version would (the default version
// when the room is unknown to us: right for every version that shares
// its redaction algorithm).
func (f *Federation) refuseUnplaced(results map[string]pduResult, version string, p []byte, msg string) {
	if version == "" {
		version = rooms.DefaultVersion
	}
	if id := eventIDOf(p, version); id != "" {
		results[id] = pduResult{Error: msg}
	}
}

func (f *Federation) receiveRoomPDUs(ctx context.Context, origin, roomID string, pdus [][]byte, results map[string]pduResult) error {
	info, err := f.deps.DB.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		// We are not in this room: nothing to check it against. That
		// is an error for each of its PDUs, not for the transaction
		// (Server-Server API, PUT /send: "pdus": the processing result
		// of each PDU).
		f.log.Info("PDUs for a room we are not in", "origin", origin, "room", roomID, "count", len(pdus))
		for _, p := range pdus {
			f.refuseUnplaced(results, "", p, "unknown room "+roomID)
		}
		return nil
	}
	if err != nil {
		return err
	}
	rid := rooms.RoomID(roomID)
	// Partial-state joins (partial.go, H14): the room's events wait
	// until its full state is known; an error (the sender gave up) is
	// ours, so the transaction is not recorded and its retry is
	// processed.
	if err := f.deps.Rooms.AwaitFullState(ctx, rid); err != nil {
		return err
	}
	res, err := f.deps.Rooms.AdmitMany(ctx, rid, pdus)
	if err != nil {
		// The room service did not look at the PDUs (closed, cancelled,
		// storage failed): no verdict to give.
		return err
	}
	for i, r := range res {
		id := eventIDOf(pdus[i], info.Version)
		if r.Err != nil {
			var missingAuth *rooms.MissingAuthError
			if errors.As(r.Err, &missingAuth) {
				r = f.admitAfterAuth(ctx, origin, rid, pdus[i], missingAuth)
			}
		}
		if r.Err != nil {
			if errors.Is(r.Err, rooms.ErrClosed) || ctx.Err() != nil {
				// Ours, not the PDU's: a timeout of a fetch from
				// another server is the PDU's, a cancelled request
				// or a stopping room service is not.
				return r.Err
			}
			f.log.Info("PDU not accepted", "origin", origin, "room", roomID, "event", id, "err", r.Err)
			if id != "" {
				results[id] = pduResult{Error: r.Err.Error()}
			}
			continue
		}
		if len(r.MissingPrevs) > 0 {
			f.fillGapLater(origin, rid, r.Event.ID())
		}
		if r.Rejected != "" {
			results[string(r.Event.ID())] = pduResult{Error: "rejected: " + r.Rejected}
			continue
		}
		results[string(r.Event.ID())] = pduResult{}
	}
	return nil
}

// eventIDOf computes a PDU's event ID in a room version for the response,
// valid event or not, or "" when it cannot (not a JSON object, or an
// unknown room version).
func eventIDOf(p []byte, version string) string {
	v, ok := rooms.LookupVersion(version)
	if !ok {
		return ""
	}
	id, ok := rooms.ReferenceID(v, p)
	if !ok {
		return ""
	}
	return string(id)
}

// isObject reports whether b is a JSON object (b is known to be JSON).
func isObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// admitAfterAuth fetches an event's missing auth events from the origin
// and admits them (and, recursively, theirs), then the event again.
func (f *Federation) admitAfterAuth(ctx context.Context, origin string, roomID rooms.RoomID, pdu []byte, missing *rooms.MissingAuthError) rooms.AdmitResult {
	var chain struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	path := "/_matrix/federation/v1/event_auth/" + pathEscape(string(roomID)) + "/" + pathEscape(string(missing.EventID))
	if err := f.client.Do(ctx, origin, "GET", path, nil, &chain); err != nil {
		return rooms.AdmitResult{Err: fmt.Errorf("fetching the auth chain of %s: %w", missing.EventID, err)}
	}
	if err := f.admitOrdered(ctx, roomID, chain.AuthChain); err != nil {
		return rooms.AdmitResult{Err: err}
	}
	a, err := f.deps.Rooms.Admit(ctx, roomID, pdu)
	return rooms.AdmitResult{Admitted: a, Err: err}
}

// admitOrdered admits fetched events oldest first (by depth), so that
// each finds its auth and prev events already stored where it can.
func (f *Federation) admitOrdered(ctx context.Context, roomID rooms.RoomID, pdus []json.RawMessage) error {
	type item struct {
		depth int64
		data  []byte
	}
	items := make([]item, 0, len(pdus))
	for _, p := range pdus {
		var d struct {
			Depth int64 `json:"depth"`
		}
		_ = json.Unmarshal(p, &d)
		items = append(items, item{d.Depth, p})
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].depth < items[j].depth })
	data := make([][]byte, len(items))
	for i, it := range items {
		data[i] = it.data
	}
	if len(data) == 0 {
		return nil
	}
	res, err := f.deps.Rooms.AdmitMany(ctx, roomID, data)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil && isFatalAdmit(r.Err) {
			return r.Err
		}
	}
	return nil
}

// isFatalAdmit tells errors that stop a fetch from per-event refusals
// (a bad event among fetched ones is dropped and the rest go on).
func isFatalAdmit(err error) bool {
	return errors.Is(err, rooms.ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
