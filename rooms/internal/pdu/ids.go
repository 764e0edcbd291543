package pdu

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/servername"
)

// Typed identifiers (appendices, "Common Identifier Format"). Values of
// these types produced by the Parse functions are valid; conversions from
// plain strings are for trusted, already-validated data.
type (
	RoomID     string
	EventID    string
	UserID     string
	ServerName string
)

// maxIDLength is the 255-byte limit on user, room and event IDs (appendices,
// "Identifier Grammar").
const maxIDLength = 255

// ParseServerName checks the server name grammar (appendices, "Server
// Name"): hostname, IPv4 literal or bracketed IPv6 literal, optional port.
// The same check guards our own name in the configuration.
func ParseServerName(s string) (ServerName, error) {
	if len(s) > maxIDLength {
		return "", fmt.Errorf("invalid server name: longer than %d bytes", maxIDLength)
	}
	if err := servername.Check(s); err != nil {
		return "", fmt.Errorf("invalid server name %q: %w", s, err)
	}
	return ServerName(s), nil
}

// splitSigil splits "<sigil>localpart:server" at the first colon.
func splitSigil(s string, sigil byte) (local string, server ServerName, err error) {
	if len(s) < 3 || s[0] != sigil {
		return "", "", fmt.Errorf("must start with %q", sigil)
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("missing ':server' part")
	}
	server, err = ParseServerName(s[i+1:])
	if err != nil {
		return "", "", err
	}
	return s[1:i], server, nil
}

// ParseUserID validates a user ID. It accepts the historical user ID
// grammar because existing rooms contain such senders: appendices,
// "Historical User IDs": servers "MUST accept user IDs with localparts
// consisting of any legal non-surrogate Unicode code points except for :
// and NUL (U+0000), including other control characters and the empty
// string". New local users are held to the strict grammar by the
// registration code.
func ParseUserID(s string) (UserID, error) {
	if len(s) > maxIDLength {
		return "", fmt.Errorf("invalid user ID: longer than %d bytes", maxIDLength)
	}
	// The localpart may be empty, so "@:x" (3 bytes) is the shortest ID.
	local, _, err := splitSigil(s, '@')
	if err != nil {
		return "", fmt.Errorf("invalid user ID %q: %w", s, err)
	}
	if !validLocalpart(local) {
		return "", fmt.Errorf("invalid user ID %q: localpart has NUL or is not UTF-8", s)
	}
	return UserID(s), nil
}

// validLocalpart is the historical user ID and room ID localpart rule:
// valid UTF-8 (which excludes surrogates) without NUL; ':' cannot occur
// because the localpart ends at the first one.
func validLocalpart(local string) bool {
	return utf8.ValidString(local) && strings.IndexByte(local, 0) < 0
}

// Localpart is the part between '@' and the first ':'.
func (u UserID) Localpart() string {
	s := string(u)
	if i := strings.IndexByte(s, ':'); i > 0 {
		return s[1:i]
	}
	return ""
}

// Domain is the server part of a user ID.
func (u UserID) Domain() ServerName {
	s := string(u)
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return ServerName(s[i+1:])
	}
	return ""
}

// ParseRoomID validates a room ID: either "!opaque:server" (room versions up
// to 11) or "!" + 43 characters of URL-safe unpadded base64, the hash of
// the create event (room version 12, appendices "Room IDs").
func ParseRoomID(s string) (RoomID, error) {
	if len(s) > maxIDLength || len(s) < 2 || s[0] != '!' {
		return "", fmt.Errorf("invalid room ID %q", s)
	}
	if !strings.Contains(s, ":") {
		if !isURLBase64(s[1:]) || len(s) != 44 {
			return "", fmt.Errorf("invalid room ID %q: not a create-event hash", s)
		}
		return RoomID(s), nil
	}
	local, _, err := splitSigil(s, '!')
	if err != nil {
		return "", fmt.Errorf("invalid room ID %q: %w", s, err)
	}
	// Appendices, "Room IDs": the localpart "MUST only contain valid
	// non-surrogate Unicode code points, including control characters,
	// except : and NUL (U+0000)".
	if !validLocalpart(local) {
		return "", fmt.Errorf("invalid room ID %q: localpart has NUL or is not UTF-8", s)
	}
	return RoomID(s), nil
}

// Domain is the server part of a room ID, empty for version 12 room IDs.
func (r RoomID) Domain() ServerName {
	s := string(r)
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return ServerName(s[i+1:])
	}
	return ""
}

// ParseEventID validates an event ID of room version 4 and later: "$" + 43
// characters of URL-safe unpadded base64.
func ParseEventID(s string) (EventID, error) {
	if len(s) != 44 || s[0] != '$' || !isURLBase64(s[1:]) {
		return "", fmt.Errorf("invalid event ID %q", s)
	}
	return EventID(s), nil
}

func isURLBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}
