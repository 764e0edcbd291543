package accounts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// ErrFilterNotFound is Filter's answer for an unknown filter ID: 404
// M_NOT_FOUND (Client-Server API, GET /user/{userId}/filter/{filterId}).
var ErrFilterNotFound = mxerr.NotFound("Unknown filter")

// The filter types of the Client-Server API ("Filtering"), used to check
// a filter's shape: a field of the wrong JSON type fails decoding with
// M_BAD_JSON; values outside what the spec allows are M_INVALID_PARAM.
type eventFilter struct {
	Limit      *int64   `json:"limit"`
	NotSenders []string `json:"not_senders"`
	NotTypes   []string `json:"not_types"`
	Senders    []string `json:"senders"`
	Types      []string `json:"types"`
}

type roomEventFilter struct {
	eventFilter
	UnreadThreadNotifications *bool    `json:"unread_thread_notifications"`
	LazyLoadMembers           *bool    `json:"lazy_load_members"`
	IncludeRedundantMembers   *bool    `json:"include_redundant_members"`
	NotRooms                  []string `json:"not_rooms"`
	Rooms                     []string `json:"rooms"`
	ContainsURL               *bool    `json:"contains_url"`
}

type roomFilter struct {
	NotRooms     []string         `json:"not_rooms"`
	Rooms        []string         `json:"rooms"`
	Ephemeral    *roomEventFilter `json:"ephemeral"`
	IncludeLeave *bool            `json:"include_leave"`
	State        *roomEventFilter `json:"state"`
	Timeline     *roomEventFilter `json:"timeline"`
	AccountData  *roomEventFilter `json:"account_data"`
}

type syncFilter struct {
	EventFields []string     `json:"event_fields"`
	EventFormat *string      `json:"event_format"`
	Presence    *eventFilter `json:"presence"`
	AccountData *eventFilter `json:"account_data"`
	Room        *roomFilter  `json:"room"`
}

// ValidateFilter checks that b is a filter (Client-Server API,
// "Filtering"), as the /sync slice must for inline filters.
func ValidateFilter(b []byte) error {
	var f syncFilter
	if err := endpoint.Unmarshal(b, &f); err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) == "null" {
		return mxerr.BadJSON("A filter must be a JSON object")
	}
	if f.EventFormat != nil && *f.EventFormat != "client" && *f.EventFormat != "federation" {
		return mxerr.InvalidParam("event_format must be 'client' or 'federation'")
	}
	if err := f.Presence.check("presence"); err != nil {
		return err
	}
	if err := f.AccountData.check("account_data"); err != nil {
		return err
	}
	if r := f.Room; r != nil {
		if err := checkIDs("room.rooms", r.Rooms, '!'); err != nil {
			return err
		}
		if err := checkIDs("room.not_rooms", r.NotRooms, '!'); err != nil {
			return err
		}
		for name, ef := range map[string]*roomEventFilter{
			"room.ephemeral": r.Ephemeral, "room.state": r.State, "room.timeline": r.Timeline, "room.account_data": r.AccountData,
		} {
			if ef == nil {
				continue
			}
			if err := ef.eventFilter.check(name); err != nil {
				return err
			}
			if err := checkIDs(name+".rooms", ef.Rooms, '!'); err != nil {
				return err
			}
			if err := checkIDs(name+".not_rooms", ef.NotRooms, '!'); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *eventFilter) check(name string) error {
	if f == nil {
		return nil
	}
	if f.Limit != nil && *f.Limit < 1 {
		return mxerr.InvalidParam(name + ".limit must be an integer greater than 0")
	}
	if err := checkIDs(name+".senders", f.Senders, '@'); err != nil {
		return err
	}
	return checkIDs(name+".not_senders", f.NotSenders, '@')
}

// checkIDs checks the sigil of each ID (the filter schema's patterns "^!"
// for rooms and "^@" for users).
func checkIDs(name string, ids []string, sigil byte) error {
	for _, id := range ids {
		if id == "" || id[0] != sigil {
			return mxerr.InvalidParam(fmt.Sprintf("%s: %q does not start with %q", name, id, string(sigil)))
		}
	}
	return nil
}

// handlePostFilter is POST /user/{userId}/filter.
func (a *Accounts) handlePostFilter(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	if r.PathValue("userId") != s.UserID {
		fail(w, mxerr.Forbidden("Cannot create filters for other users"))
		return
	}
	b, err := endpoint.ReadBody(r, 0)
	if err != nil {
		fail(w, err)
		return
	}
	if err := ValidateFilter(b); err != nil {
		fail(w, err)
		return
	}
	c, err := compactJSON(b)
	if err != nil {
		fail(w, err)
		return
	}
	ctx := r.Context()
	var id int64
	err = a.db.Update(ctx, func(tx *storage.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?`, s.UserID).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO filters (user_id, filter_id, json) VALUES (?, ?, ?)`, s.UserID, id, string(c))
		return err
	})
	if err != nil {
		fail(w, fmt.Errorf("accounts: store filter: %w", err))
		return
	}
	endpoint.Write(w, map[string]string{"filter_id": strconv.FormatInt(id, 10)})
}

// handleGetFilter is GET /user/{userId}/filter/{filterId}.
func (a *Accounts) handleGetFilter(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	if r.PathValue("userId") != s.UserID {
		fail(w, mxerr.Forbidden("Cannot get filters for other users"))
		return
	}
	f, err := a.Filter(r.Context(), s.UserID, r.PathValue("filterId"))
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(f)
}

// Filter returns the user's stored filter, or ErrFilterNotFound.
func (a *Accounts) Filter(ctx context.Context, userID, filterID string) (json.RawMessage, error) {
	id, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil || id < 0 {
		return nil, ErrFilterNotFound
	}
	var f string
	err = a.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT json FROM filters WHERE user_id = ? AND filter_id = ?`, userID, id).Scan(&f)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrFilterNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: read filter: %w", err)
	}
	return json.RawMessage(f), nil
}
