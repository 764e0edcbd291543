package roomapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// roomAlias is a parsed "#localpart:server".
type roomAlias struct {
	full, local, server string
}

// parseAlias checks the room alias grammar (appendices, "Room aliases"):
// "#", a localpart of any valid non-surrogate code points except ":" and
// NUL, ":", a server name; 255 bytes at most. 400 M_INVALID_PARAM
// otherwise.
func parseAlias(s string) (roomAlias, error) {
	bad := mxerr.InvalidParam(fmt.Sprintf("Invalid room alias %q", s))
	if len(s) > 255 || !strings.HasPrefix(s, "#") || !utf8.ValidString(s) {
		return roomAlias{}, bad
	}
	local, server, ok := strings.Cut(s[1:], ":")
	if !ok || local == "" || strings.ContainsRune(local, 0) {
		return roomAlias{}, bad
	}
	if _, err := rooms.ParseServerName(server); err != nil {
		return roomAlias{}, bad
	}
	return roomAlias{full: s, local: local, server: server}, nil
}

// resolveAlias maps one of our aliases to its room: 404 M_NOT_FOUND if it
// has none. Another server's aliases are resolved by lookupAlias.
func (a *API) resolveAlias(ctx context.Context, alias roomAlias) (string, error) {
	if alias.server != a.cfg.ServerName {
		return "", mxerr.NotFound(fmt.Sprintf("Room alias %s not found", alias.full))
	}
	var id string
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT room_id FROM room_aliases WHERE alias = ?`, alias.full).Scan(&id)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", mxerr.NotFound(fmt.Sprintf("Room alias %s not found", alias.full))
	}
	return id, err
}

// errAliasTaken is the conflict createAlias reports.
var errAliasTaken = errors.New("roomapi: alias taken")

// createAlias maps alias to roomID; errAliasTaken if it is mapped.
func (a *API) createAlias(ctx context.Context, alias, roomID, creator string) error {
	return a.deps.DB.Update(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?)
			ON CONFLICT (alias) DO NOTHING`, alias, roomID, creator, a.deps.Now().UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errAliasTaken
		}
		return nil
	})
}

// aliasInUse reports whether alias is mapped.
func (a *API) aliasInUse(ctx context.Context, alias string) (bool, error) {
	var n int
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT COUNT(*) FROM room_aliases WHERE alias = ?`, alias).Scan(&n)
	})
	return n > 0, err
}

func (a *API) putAlias(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	alias, err := parseAlias(r.PathValue("roomAlias"))
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	var body struct {
		RoomID string `json:"room_id"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if body.RoomID == "" {
		endpoint.Fail(w, mxerr.MissingParam("Missing room_id"))
		return
	}
	if err := validRoomID(body.RoomID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if alias.server != a.cfg.ServerName {
		endpoint.Fail(w, mxerr.InvalidParam("Room alias must be on this server"))
		return
	}
	if _, err := a.roomVersion(ctx, body.RoomID); errors.Is(err, rooms.ErrUnknownRoom) {
		endpoint.Fail(w, mxerr.NotFound("Unknown room"))
		return
	} else if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := a.requireJoined(ctx, body.RoomID, s.UserID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	unlock, ok := a.aliasLocks.tryLock(alias.full)
	if !ok {
		endpoint.Fail(w, aliasConflict(alias.full))
		return
	}
	defer unlock()
	if err := a.createAlias(ctx, alias.full, body.RoomID, s.UserID); errors.Is(err, errAliasTaken) {
		endpoint.Fail(w, aliasConflict(alias.full))
		return
	} else if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

// aliasConflict is 409 M_UNKNOWN, the spec's answer for a taken alias
// (Client-Server API, PUT /directory/room/{roomAlias}).
func aliasConflict(alias string) error {
	return mxerr.New(http.StatusConflict, mxerr.CodeUnknown, fmt.Sprintf("Room alias %s already exists", alias))
}

func (a *API) getAlias(w http.ResponseWriter, r *http.Request) {
	alias, err := parseAlias(r.PathValue("roomAlias"))
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	id, servers, err := a.lookupAlias(r.Context(), alias)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]any{"room_id": id, "servers": servers})
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	alias, err := parseAlias(r.PathValue("roomAlias"))
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	var creator, roomID string
	err = a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT creator, room_id FROM room_aliases WHERE alias = ?`, alias.full).Scan(&creator, &roomID)
	})
	if errors.Is(err, sql.ErrNoRows) {
		endpoint.Fail(w, mxerr.NotFound(fmt.Sprintf("Room alias %s not found", alias.full)))
		return
	} else if err != nil {
		endpoint.Fail(w, err)
		return
	}
	// "Servers may choose to implement additional access control checks
	// here, for instance that room aliases can only be deleted by their
	// creator or a server administrator."
	if creator != s.UserID && !s.Admin {
		endpoint.Fail(w, mxerr.Forbidden("You may not delete this alias"))
		return
	}
	err = a.deps.DB.Exec(ctx, `DELETE FROM room_aliases WHERE alias = ?`, alias.full)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

func (a *API) roomAliases(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	m, err := a.membership(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if m != "join" && !s.Admin {
		// "external users receive an M_FORBIDDEN error response", unless
		// the room is world readable.
		info, err := a.deps.DB.Room(ctx, roomID)
		if errors.Is(err, storage.ErrNotFound) {
			endpoint.Fail(w, mxerr.Forbidden("You are not in the room"))
			return
		} else if err != nil {
			endpoint.Fail(w, err)
			return
		}
		vis, err := a.visibilityIn(ctx, roomID, info.Current)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		if vis.hv != hvWorldReadable {
			endpoint.Fail(w, mxerr.Forbidden("You are not in the room"))
			return
		}
	}
	var out []string
	err = a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		out, err = tx.Strings(ctx, `SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY created_ts, alias`, roomID)
		return err
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string][]string{"aliases": out})
}
