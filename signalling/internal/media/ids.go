package media

import (
	"crypto/rand"

	"github.com/plexus-chat/plexus/internal/servername"
)

// mediaIDLen is the length of the media IDs we issue: 24 base62
// characters carry 142 bits, so IDs cannot be guessed (knowing one is all
// the deprecated download endpoint asks for).
const mediaIDLen = 24

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newMediaID returns a random media ID.
func newMediaID() string {
	out := make([]byte, 0, mediaIDLen)
	var buf [32]byte
	for len(out) < mediaIDLen {
		rand.Read(buf[:]) // crypto/rand.Read never fails (Go 1.24+)
		for _, b := range buf {
			// 248 = 4×62: rejecting the top bytes keeps every
			// character equally likely.
			if b < 248 && len(out) < mediaIDLen {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out)
}

// validMediaID reports whether id is a media ID at all: "The media-id
// segment MUST consist of only alphanumeric (A-Za-z0-9), _ and -
// characters" (Client-Server API, "Matrix Content (mxc://) URIs"). The
// check is also what keeps IDs from walking the file system.
func validMediaID(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// validServerName reports whether s may be the authority of an mxc:// URI
// (Client-Server API, "Content repository", "Security considerations":
// restrict it to valid server names).
func validServerName(s string) bool {
	return len(s) <= 255 && servername.Check(s) == nil
}

// mxc formats an mxc:// URI.
func mxc(server, id string) string { return "mxc://" + server + "/" + id }
