package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/plexus-chat/plexus/internal/storage"
)

// foreignJoin has gomatrixserverlib join userID (on the foreign server f)
// to roomID through the resident server dest, reached at baseURL: its
// PerformJoin does make_join (v1) and send_join (v2) with requests signed
// by fclient (server-server API, "Joining Rooms", "Request
// Authentication"), and checks the send_join response as a joining
// server must: every state and auth chain event signed, hashed and
// allowed, and the join allowed by the returned state.
//
// It takes a base URL and an http.Client: TestForeignJoin points it at a
// stand-in, TestHostileServer at a real Plexus federation listener.
func foreignJoin(ctx context.Context, client *http.Client, baseURL string, f *foreignServer, keys *gmsl.KeyRing,
	dest spec.ServerName, roomID, userID string) (*gmsl.PerformJoinResponse, error) {
	uid, err := spec.NewUserID(userID, true)
	if err != nil {
		return nil, err
	}
	rid, err := spec.NewRoomID(roomID)
	if err != nil {
		return nil, err
	}
	jc := &joinClient{base: baseURL, http: client, f: f}
	res, ferr := gmsl.PerformJoin(ctx, jc, gmsl.PerformJoinInput{
		UserID:        uid,
		RoomID:        rid,
		ServerName:    dest,
		PrivateKey:    f.priv,
		KeyID:         f.keyID,
		KeyRing:       keys,
		EventProvider: jc.noMissingAuth,
		UserIDQuerier: userIDForSender,
	})
	if ferr != nil {
		return nil, ferr
	}
	return res, nil
}

// joinClient is gomatrixserverlib's FederatedJoinClient over one base URL.
type joinClient struct {
	base string
	http *http.Client
	f    *foreignServer
}

// noMissingAuth is PerformJoin's source of auth events the response
// lacks: a resident server must send the whole auth chain, so none are
// fetched.
func (j *joinClient) noMissingAuth(_ gmsl.RoomVersion, ids []string) ([]gmsl.PDU, error) {
	return nil, fmt.Errorf("send_join response lacks auth events %v", ids)
}

// do sends a request signed as j.f and decodes a 200 response into out.
func (j *joinClient) do(ctx context.Context, method string, dest spec.ServerName, uri string, body []byte, out any) error {
	fr := fclient.NewFederationRequest(method, j.f.name, dest, uri)
	if body != nil {
		if err := fr.SetContent(spec.RawJSON(body)); err != nil {
			return err
		}
	}
	if err := fr.Sign(j.f.name, j.f.keyID, j.f.priv); err != nil {
		return err
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		return err
	}
	base, err := url.Parse(j.base)
	if err != nil {
		return err
	}
	req.URL.Scheme, req.URL.Host, req.Host = base.Scheme, base.Host, base.Host
	resp, err := j.http.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, uri, resp.Status, data)
	}
	return json.Unmarshal(data, out)
}

// MakeJoin implements gmsl.FederatedJoinClient.
func (j *joinClient) MakeJoin(ctx context.Context, _, dest spec.ServerName, roomID, userID string) (gmsl.MakeJoinResponse, error) {
	uri := "/_matrix/federation/v1/make_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID) + "?ver=10&ver=11"
	var res fclient.RespMakeJoin
	if err := j.do(ctx, http.MethodGet, dest, uri, nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// SendJoin implements gmsl.FederatedJoinClient.
func (j *joinClient) SendJoin(ctx context.Context, _, dest spec.ServerName, ev gmsl.PDU) (gmsl.SendJoinResponse, error) {
	uri := "/_matrix/federation/v2/send_join/" + url.PathEscape(ev.RoomID().String()) + "/" + url.PathEscape(ev.EventID())
	var res fclient.RespSendJoin
	if err := j.do(ctx, http.MethodPut, dest, uri, ev.JSON(), &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// standIn serves make_join and send_join for one room from a Plexus
// rooms.Service and its storage, standing in for Plexus's federation
// endpoints until they exist: the events, state and auth chain it returns
// are exactly those Plexus stored.
type standIn struct {
	s    *scenario
	p    *plexusServer
	keys *gmsl.KeyRing
}

func (si *standIn) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/federation/v1/make_join/{room}/{user}", si.authed(si.makeJoin))
	mux.HandleFunc("PUT /_matrix/federation/v2/send_join/{room}/{event}", si.authed(si.sendJoin))
	return mux
}

// authed checks the X-Matrix signature of a request with
// gomatrixserverlib; what is under test is the joining side's signing.
func (si *standIn) authed(h func(w http.ResponseWriter, r *http.Request, origin string, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fr, res := fclient.VerifyHTTPRequest(r, time.Now(), spec.ServerName(si.p.name), nil, si.keys)
		if fr == nil {
			writeJSON(w, res.Code, res.JSON)
			return
		}
		h(w, r, string(fr.Origin()), fr.Content())
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func matrixError(w http.ResponseWriter, code int, errcode, msg string) {
	writeJSON(w, code, map[string]string{"errcode": errcode, "error": msg})
}

// makeJoin answers GET make_join (server-server API, "Joining Rooms"):
// a join event template on the room's forward extremities.
func (si *standIn) makeJoin(w http.ResponseWriter, r *http.Request, origin string, _ []byte) {
	ctx := r.Context()
	room, user := r.PathValue("room"), r.PathValue("user")
	if room != string(si.s.room) {
		matrixError(w, http.StatusNotFound, "M_NOT_FOUND", "unknown room")
		return
	}
	if !strings.HasSuffix(user, ":"+origin) {
		matrixError(w, http.StatusForbidden, "M_FORBIDDEN", "user is not on the origin server")
		return
	}
	if !slices.Contains(r.URL.Query()["ver"], si.s.version) {
		matrixError(w, http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "room version not supported")
		return
	}
	info, err := si.p.store.Room(ctx, room)
	if err != nil {
		matrixError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	recs, err := si.p.store.Events(ctx, info.Extremities)
	if err != nil {
		matrixError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	var depth int64
	for _, rec := range recs {
		depth = max(depth, rec.Depth+1)
	}
	// Auth events selection for a join (server-server API, "Auth events
	// selection"): create, power levels, join rules and the joiner's
	// current membership.
	var auth []string
	for _, k := range []storage.StateKey{{Type: "m.room.create"}, {Type: "m.room.power_levels"}, {Type: "m.room.join_rules"}, {Type: "m.room.member", StateKey: user}} {
		if id, ok := info.Current[k]; ok {
			auth = append(auth, id)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"room_version": si.s.version,
		"event": map[string]any{
			"type": "m.room.member", "room_id": room, "sender": user, "state_key": user,
			"content": map[string]any{"membership": "join"}, "origin": string(si.p.name),
			"origin_server_ts": time.Now().UnixMilli(), "prev_events": info.Extremities,
			"auth_events": auth, "depth": depth,
		},
	})
}

// sendJoin answers PUT send_join v2: the join goes through Plexus's
// receive pipeline; the response is the room state before it and the
// auth chain of that state and of the join.
func (si *standIn) sendJoin(w http.ResponseWriter, r *http.Request, _ string, body []byte) {
	ctx := r.Context()
	if r.PathValue("room") != string(si.s.room) {
		matrixError(w, http.StatusNotFound, "M_NOT_FOUND", "unknown room")
		return
	}
	info, err := si.p.store.Room(ctx, string(si.s.room))
	if err != nil {
		matrixError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	a, err := si.s.admitErr(si.p, body, accepted)
	if err != nil {
		matrixError(w, http.StatusBadRequest, "M_BAD_JSON", err.Error())
		return
	}
	if string(a.Event.ID()) != r.PathValue("event") {
		matrixError(w, http.StatusBadRequest, "M_BAD_JSON", "event ID does not match the path")
		return
	}
	if a.Rejected != "" || a.SoftFailed {
		matrixError(w, http.StatusForbidden, "M_FORBIDDEN", "join not allowed: "+a.Rejected)
		return
	}
	state := make([]string, 0, len(info.Current))
	for _, id := range info.Current {
		state = append(state, id)
	}
	slices.Sort(state)
	chain, err := si.p.store.AuthChain(ctx, append(slices.Clone(state), string(a.Event.ID())))
	if err != nil {
		matrixError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	chain = slices.DeleteFunc(chain, func(id string) bool { return id == string(a.Event.ID()) })
	stateJSON, err1 := si.eventJSONs(ctx, state)
	chainJSON, err2 := si.eventJSONs(ctx, chain)
	if err1 != nil || err2 != nil {
		matrixError(w, http.StatusInternalServerError, "M_UNKNOWN", fmt.Sprint(err1, err2))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"origin": string(si.p.name), "state": stateJSON, "auth_chain": chainJSON, "members_omitted": false,
	})
}

func (si *standIn) eventJSONs(ctx context.Context, ids []string) ([]json.RawMessage, error) {
	recs, err := si.p.store.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(ids))
	for _, id := range ids {
		rec, ok := recs[id]
		if !ok {
			return nil, fmt.Errorf("event %s not stored", id)
		}
		out = append(out, json.RawMessage(rec.JSON))
	}
	return out, nil
}

// TestForeignJoin has gomatrixserverlib join a Plexus room as a foreign
// server would, then checks the room again, join included.
func TestForeignJoin(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		for _, version := range versions {
			t.Run("v"+version, func(t *testing.T) { testForeignJoin(t, backend, version) })
		}
	})
}

func testForeignJoin(t *testing.T, backend, version string) {
	ctx := context.Background()
	w := newWorld(backend)
	s := buildScenario(t, w, version)
	si := &standIn{s: s, p: s.hs1, keys: w.verifier()}
	srv := httptest.NewServer(si.handler())
	t.Cleanup(srv.Close)

	frank := "@frank:gmsl.example"
	res, err := foreignJoin(ctx, srv.Client(), srv.URL, s.foreign, w.verifier(), "hs1", string(s.room), frank)
	if err != nil {
		t.Fatalf("gomatrixserverlib could not join the Plexus room: %v", err)
	}
	info, err := s.hs1.store.Room(ctx, string(s.room))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Current[storage.StateKey{Type: "m.room.member", StateKey: frank}]; got != res.JoinEvent.EventID() {
		t.Fatalf("hs1's membership of %s is %q, want the join %s", frank, got, res.JoinEvent.EventID())
	}
	// The state gomatrixserverlib accepted is hs1's state before the join.
	states := res.StateSnapshot.GetStateEvents().UntrustedEvents(gmsl.RoomVersion(version))
	if len(states) != len(info.Current)-1 {
		t.Errorf("send_join returned %d state events, hs1 holds %d besides the join", len(states), len(info.Current)-1)
	}
	for _, ev := range states {
		if info.Current[storage.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] != ev.EventID() {
			t.Errorf("state event %s (%s) is not hs1's current state", ev.EventID(), ev.Type())
		}
	}

	c := newChecker(w, version, s.hs1, s.hs1, s.hs2)
	got, err := c.checkRoom(ctx, s.room)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range c.findings {
		t.Error(f)
	}
	if got[res.JoinEvent.EventID()] != accepted {
		t.Errorf("join stored as %q", got[res.JoinEvent.EventID()])
	}
}
