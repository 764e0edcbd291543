package rtcauth

import (
	"encoding/json"
	"sort"
	"strings"
	"time"
)

// Call membership state event types: MSC3401's as Element Call sends it
// today (one event per device, state key "_@user:server_DEVICE_m.call"),
// and MSC4143's m.rtc.member.
const (
	TypeCallMember = "org.matrix.msc3401.call.member"
	TypeRTCMember  = "m.rtc.member"
)

// DefaultExpiry is how long a membership that names no expiry lasts
// after it was created: matrix-js-sdk's DEFAULT_EXPIRE_DURATION (four
// hours). Clients refresh their membership long before it.
const DefaultExpiry = 4 * time.Hour

// StateEvent is a call membership state event as stored.
type StateEvent struct {
	Type, StateKey, Sender string
	// OriginServerTS is the event's origin_server_ts in milliseconds.
	OriginServerTS int64
	Content        json.RawMessage
}

// Membership is one device's live membership of a call.
type Membership struct {
	// Type and StateKey are the event's.
	Type, StateKey string
	UserID         string
	DeviceID       string
	// MemberID is m.rtc.member's member.id, or the legacy form's
	// membershipID.
	MemberID string
	// Application and CallID (or SlotID for m.rtc.member) say which call.
	Application, CallID, SlotID string
	// FocusActive is the focus (SFU) the device publishes to and
	// FociPreferred the ones it would use (MSC4143/MSC4195); raw JSON.
	FocusActive   json.RawMessage
	FociPreferred json.RawMessage
	// CreatedTS and ExpiresTS are in milliseconds since the epoch.
	CreatedTS, ExpiresTS int64
}

// memberContent is the union of the membership content forms.
type memberContent struct {
	// Session form (MSC4143 over call.member) and legacy entries.
	// Application is a string (call.member) or an object with a type
	// (m.rtc.member).
	Application   json.RawMessage `json:"application"`
	CallID        string          `json:"call_id"`
	DeviceID      string          `json:"device_id"`
	FocusActive   json.RawMessage `json:"focus_active"`
	FociPreferred json.RawMessage `json:"foci_preferred"`
	FociActive    json.RawMessage `json:"foci_active"`
	CreatedTS     *int64          `json:"created_ts"`
	Expires       *int64          `json:"expires"`
	ExpiresTS     *int64          `json:"expires_ts"`
	MembershipID  string          `json:"membershipID"`
	// Legacy form: every device of the user in one event keyed by the
	// user ID.
	Memberships []memberContent `json:"memberships"`
	// m.rtc.member form.
	SlotID string `json:"slot_id"`
	Member *struct {
		ID         string `json:"id"`
		Membership string `json:"membership"`
		DeviceID   string `json:"device_id"`
		UserID     string `json:"user_id"`
	} `json:"member"`
}

// LiveMemberships returns the memberships in evs that are live at now,
// ordered by creation: content that is empty (the member left, or was
// redacted), says membership "leave", has no device, or is past its
// expiry is not. Expiry follows matrix-js-sdk's CallMembership: expires_ts
// if given, else (created_ts, or the event's origin_server_ts) plus
// expires, or DefaultExpiry when the content names none. A state key
// that does not belong to its sender (MSC3757 owned state: it must start
// with the sender's user ID, or "_" and it) is ignored, so that no one
// can put another user in a call.
//
// Whether the sender is still joined to the room is for the caller to
// check (MSC4143: a member who left the room has left the call).
func LiveMemberships(evs []StateEvent, now time.Time) []Membership {
	nowMS := now.UnixMilli()
	var out []Membership
	for _, ev := range evs {
		if ev.Type != TypeCallMember && ev.Type != TypeRTCMember {
			continue
		}
		if !ownsStateKey(ev.Sender, ev.StateKey) {
			continue
		}
		var c memberContent
		if json.Unmarshal(ev.Content, &c) != nil {
			continue
		}
		entries := []memberContent{c}
		if c.Memberships != nil {
			entries = c.Memberships
		}
		for _, e := range entries {
			m, ok := membershipOf(ev, e)
			if ok && m.ExpiresTS > nowMS {
				out = append(out, m)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedTS < out[j].CreatedTS })
	return out
}

func membershipOf(ev StateEvent, c memberContent) (Membership, bool) {
	m := Membership{Type: ev.Type, StateKey: ev.StateKey, UserID: ev.Sender, DeviceID: c.DeviceID,
		MemberID: c.MembershipID, Application: appType(c.Application), CallID: c.CallID, SlotID: c.SlotID,
		FocusActive: c.FocusActive, FociPreferred: c.FociPreferred}
	if m.FociPreferred == nil {
		m.FociPreferred = c.FociActive
	}
	if c.Member != nil {
		if c.Member.Membership == "leave" {
			return m, false
		}
		m.MemberID = c.Member.ID
		if m.DeviceID == "" {
			m.DeviceID = c.Member.DeviceID
		}
	}
	if m.DeviceID == "" {
		return m, false
	}
	m.CreatedTS = ev.OriginServerTS
	if c.CreatedTS != nil && *c.CreatedTS > 0 {
		m.CreatedTS = *c.CreatedTS
	}
	switch {
	case c.ExpiresTS != nil:
		m.ExpiresTS = *c.ExpiresTS
	case c.Expires != nil:
		m.ExpiresTS = m.CreatedTS + *c.Expires
	default:
		m.ExpiresTS = m.CreatedTS + DefaultExpiry.Milliseconds()
	}
	return m, true
}

// ownsStateKey reports whether a membership event's state key is the
// sender's: the user ID itself (the legacy per-user event), or starting
// with "<user>_" or "_<user>_" (per-device keys).
func ownsStateKey(sender, key string) bool {
	if sender == "" {
		return false
	}
	key = strings.TrimPrefix(key, "_")
	return key == sender || strings.HasPrefix(key, sender+"_")
}

// appType reads an application that is either a string or an object
// with a type.
func appType(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &o)
	return o.Type
}
