package rtcauth

import (
	"crypto/sha256"
	"encoding/base64"
	"unicode/utf8"
)

// LegacySlot is the MatrixRTC slot the legacy /sfu/get form implies: the
// room's one call (MSC4143 slot IDs are "{application}#{slot}").
const LegacySlot = "m.call#ROOM"

// RoomAlias is the LiveKit room name ("LiveKit alias", MSC4195) for a
// slot of a Matrix room, as lk-jwt-service derives it: the unpadded
// standard base64 of the SHA-256 of the JSON array [roomID, slotID].
func RoomAlias(roomID, slotID string) string { return hashStrings(roomID, slotID) }

// Identity is the LiveKit identity of a get_token member: the unpadded
// base64 SHA-256 of the JSON array [userID, deviceID, memberID], so that
// the SFU learns neither the user nor the device.
func Identity(userID, deviceID, memberID string) string {
	return hashStrings(userID, deviceID, memberID)
}

// LegacyIdentity is the LiveKit identity of a legacy /sfu/get caller:
// "@user:server:DEVICE" (MSC3401's participant ID).
func LegacyIdentity(userID, deviceID string) string { return userID + ":" + deviceID }

// hashStrings hashes the JSON array of ss. lk-jwt-service encodes it with
// serde_json, which escapes only '"', '\\' and control characters (and
// those in lower-case \u00XX unless they have a short form); encoding/json
// would also escape <, >, & and U+2028/9 and so hash differently.
func hashStrings(ss ...string) string {
	b := []byte{'['}
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	b = append(b, ']')
	sum := sha256.Sum256(b)
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// Strings decoded from JSON never hold invalid UTF-8; serde
			// would have refused it, so the replacement is as good as any.
			b = append(b, "\ufffd"...)
			i++
			continue
		}
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
