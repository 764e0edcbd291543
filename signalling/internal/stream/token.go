package stream

import (
	"errors"
	"strconv"
	"strings"
)

// Token is a position in every stream /sync reads. The zero Token is the
// beginning of time.
type Token struct {
	Events int64
	Aux    int64
	Typing int64
}

// String encodes t as "s<events>_<aux>_<typing>"; clients treat it as
// opaque (Client-Server API, "Syncing").
func (t Token) String() string {
	b := make([]byte, 0, 32)
	b = append(b, 's')
	b = strconv.AppendInt(b, t.Events, 10)
	b = append(b, '_')
	b = strconv.AppendInt(b, t.Aux, 10)
	b = append(b, '_')
	b = strconv.AppendInt(b, t.Typing, 10)
	return string(b)
}

// ErrBadToken is returned for a token this server did not issue.
var ErrBadToken = errors.New("stream: malformed sync token")

// ParseToken decodes a Token written by String.
func ParseToken(s string) (Token, error) {
	rest, ok := strings.CutPrefix(s, "s")
	if !ok {
		return Token{}, ErrBadToken
	}
	parts := strings.Split(rest, "_")
	if len(parts) != 3 {
		return Token{}, ErrBadToken
	}
	var v [3]int64
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return Token{}, ErrBadToken
		}
		v[i] = n
	}
	return Token{Events: v[0], Aux: v[1], Typing: v[2]}, nil
}

// After reports whether t is ahead of u in any stream.
func (t Token) After(u Token) bool {
	return t.Events > u.Events || t.Aux > u.Aux || t.Typing > u.Typing
}
