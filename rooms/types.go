package rooms

import (
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// Re-exported core types, so callers outside rooms use one vocabulary
// without reaching into rooms/internal.
type (
	Event          = pdu.Event
	Version        = pdu.Version
	RoomID         = pdu.RoomID
	EventID        = pdu.EventID
	UserID         = pdu.UserID
	ServerName     = pdu.ServerName
	StateTuple     = pdu.StateTuple
	Signer         = pdu.Signer
	VerifyKey      = pdu.VerifyKey
	KeyFinder      = pdu.KeyFinder
	FormatError    = pdu.FormatError
	SignatureError = pdu.SignatureError
	// NotAllowedError names the auth rule an event failed.
	NotAllowedError = auth.NotAllowedError
)

// Identifier parsers and the version table.
var (
	ParseUserID       = pdu.ParseUserID
	ParseRoomID       = pdu.ParseRoomID
	ParseEventID      = pdu.ParseEventID
	ParseServerName   = pdu.ParseServerName
	LookupVersion     = pdu.LookupVersion
	SupportedVersions = pdu.SupportedVersions
	ParseEvent        = pdu.ParseEvent
)

// DefaultVersion is the room version of new rooms.
const DefaultVersion = pdu.DefaultVersion
