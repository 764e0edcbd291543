package fedapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// errUnknownRoom is the answer for a room we do not hold.
var errUnknownRoom = mxerr.NotFound("Unknown room")

// forbidden is the answer for a server not allowed to see a room.
func forbidden(origin string) error {
	return mxerr.Forbidden(fmt.Sprintf("Server %s is not allowed to see this room", origin))
}

// checkRoomAccess decides whether origin may read roomID, at the events
// in at if any. It returns 404 M_NOT_FOUND for an unknown room and 403
// M_FORBIDDEN when:
//
//   - the room's server ACL denies origin (Server-Server API, "Server
//     Access Control Lists (ACLs)": the room endpoints "MUST be
//     protected");
//   - or origin has no user joined in the room, neither in its current
//     state nor in the state after any event of at, and the room's history
//     is not world-readable (Server-Server API, "Retrieving events": a
//     server may only see what a user of it could; history visibility).
func (a *API) checkRoomAccess(ctx context.Context, origin, roomID string, at []string) error {
	info, err := a.store.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return errUnknownRoom
	}
	if err != nil {
		return err
	}
	if id, ok := info.Current[storage.StateKey{Type: "m.room.server_acl"}]; ok {
		content, err := a.contentOf(ctx, id)
		if err != nil {
			return err
		}
		if !ACLAllows(content, origin) {
			return mxerr.Forbidden(fmt.Sprintf("Server %s is denied by the room's server ACL", origin))
		}
	}
	if ok, err := a.serverJoined(ctx, info.Current, origin); err != nil || ok {
		return err
	}
	for _, ev := range at {
		state, err := a.store.StateAfter(ctx, ev)
		if errors.Is(err, storage.ErrNotFound) {
			continue // an outlier: no state to look at
		}
		if err != nil {
			return err
		}
		if ok, err := a.serverJoined(ctx, state, origin); err != nil || ok {
			return err
		}
	}
	if id, ok := info.Current[storage.StateKey{Type: "m.room.history_visibility"}]; ok {
		content, err := a.contentOf(ctx, id)
		if err != nil {
			return err
		}
		if hv, _ := content.GetStr("history_visibility"); hv == "world_readable" {
			return nil
		}
	}
	return forbidden(origin)
}

// serverJoined reports whether a user of server is joined in state.
func (a *API) serverJoined(ctx context.Context, state storage.StateMap, server string) (bool, error) {
	ids := membersOf(state, server)
	if len(ids) == 0 {
		return false, nil
	}
	evs, err := a.store.Events(ctx, ids)
	if err != nil {
		return false, err
	}
	for _, rec := range evs {
		if membership(rec) == "join" {
			return true, nil
		}
	}
	return false, nil
}

// membersOf returns the IDs of the member events in state whose user is
// on server.
func membersOf(state storage.StateMap, server string) []string {
	var ids []string
	for k, id := range state {
		if k.Type == "m.room.member" && userServer(k.StateKey) == server {
			ids = append(ids, id)
		}
	}
	return ids
}

// joinedServers returns the servers with a user joined in state.
func (a *API) joinedServers(ctx context.Context, state storage.StateMap) (map[string]bool, error) {
	var ids []string
	for k, id := range state {
		if k.Type == "m.room.member" {
			ids = append(ids, id)
		}
	}
	evs, err := a.store.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, rec := range evs {
		if rec.StateKey != nil && membership(rec) == "join" {
			if s := userServer(*rec.StateKey); s != "" {
				out[s] = true
			}
		}
	}
	return out, nil
}

// userServer is the server name of a user ID, "" if it is not one.
func userServer(userID string) string {
	u, err := rooms.ParseUserID(userID)
	if err != nil {
		return ""
	}
	return string(u.Domain())
}

// membership is the content.membership of a member event.
func membership(rec *storage.EventRecord) string {
	v, err := cjson.Parse(rec.JSON)
	if err != nil {
		return ""
	}
	m, _ := v.Path("content", "membership")
	s, _ := m.Str()
	return s
}

// contentOf returns the content of a stored event (null if it is not
// stored).
func (a *API) contentOf(ctx context.Context, eventID string) (cjson.Value, error) {
	evs, err := a.store.Events(ctx, []string{eventID})
	if err != nil {
		return cjson.Value{}, err
	}
	rec := evs[eventID]
	if rec == nil {
		return cjson.NullValue(), nil
	}
	v, err := cjson.Parse(rec.JSON)
	if err != nil {
		return cjson.Value{}, fmt.Errorf("fedapi: stored event %s: %w", eventID, err)
	}
	c, _ := v.Get("content")
	return c, nil
}

// ACLAllows applies the content of an m.room.server_acl event to server,
// in the order the event's definition gives (Client-Server API,
// "m.room.server_acl"): an IP literal is denied when allow_ip_literals is
// false; then a match in deny denies, a match in allow allows, and
// anything else is denied. The port is never considered, and patterns are
// case-insensitive globs (appendices, "Glob-style matching").
func ACLAllows(content cjson.Value, server string) bool {
	host := hostOf(server)
	allowIP := true
	if b, ok := content.Get("allow_ip_literals"); ok {
		if v, isBool := b.Bool(); isBool {
			allowIP = v
		}
	}
	if !allowIP && isIPLiteral(host) {
		return false
	}
	if globListMatches(content, "deny", host) {
		return false
	}
	return globListMatches(content, "allow", host)
}

// hostOf strips the port from a server name ("[::1]:8448" -> "[::1]").
func hostOf(server string) string {
	if strings.HasPrefix(server, "[") {
		if i := strings.IndexByte(server, ']'); i >= 0 {
			return server[:i+1]
		}
		return server
	}
	if i := strings.LastIndexByte(server, ':'); i >= 0 {
		return server[:i]
	}
	return server
}

func isIPLiteral(host string) bool {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return true
	}
	return net.ParseIP(host) != nil
}

// globListMatches reports whether host matches a string of content's list
// key; entries that are not strings are ignored.
func globListMatches(content cjson.Value, key, host string) bool {
	list, ok := content.Get(key)
	if !ok {
		return false
	}
	for _, p := range list.Array() {
		if s, ok := p.Str(); ok && globMatch(s, host) {
			return true
		}
	}
	return false
}

// globMatch matches s against a glob where * is any run of characters
// and ? exactly one, case-insensitively.
func globMatch(glob, s string) bool {
	var b strings.Builder
	b.WriteString("(?is)^")
	for _, r := range glob {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	return err == nil && re.MatchString(s)
}
