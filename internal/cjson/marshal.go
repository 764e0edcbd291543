package cjson

import (
	"strconv"
	"unicode/utf8"
)

// Marshal returns the canonical encoding of v.
func Marshal(v Value) []byte {
	return Append(make([]byte, 0, sizeHint(v)), v)
}

// sizeHint is the encoded size of v when no string needs escaping, which
// is nearly always; it saves Append from regrowing its buffer.
func sizeHint(v Value) int {
	switch v.kind {
	case Null, Bool:
		return 5
	case Int:
		return 16
	case String:
		return len(v.s) + 2
	case Array:
		n := 2 + len(v.arr)
		for _, e := range v.arr {
			n += sizeHint(e)
		}
		return n
	case Object:
		n := 2 + len(v.obj)
		for _, m := range v.obj {
			n += len(m.Key) + 3 + sizeHint(m.Value)
		}
		return n
	}
	return 0
}

// Append appends the canonical encoding of v to dst.
func Append(dst []byte, v Value) []byte {
	switch v.kind {
	case Null:
		return append(dst, "null"...)
	case Bool:
		if v.b {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case Int:
		return strconv.AppendInt(dst, v.n, 10)
	case String:
		return AppendString(dst, v.s)
	case Array:
		dst = append(dst, '[')
		for i, e := range v.arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = Append(dst, e)
		}
		return append(dst, ']')
	case Object:
		dst = append(dst, '{')
		for i, m := range v.obj {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, m.Key)
			dst = append(dst, ':')
			dst = Append(dst, m.Value)
		}
		return append(dst, '}')
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a canonical JSON string: only '"', '\\' and
// control characters are escaped, using the short forms \b \t \n \f \r where
// they exist and \u00XX with lower-case hex otherwise (appendices,
// "Canonical JSON", Grammar). Everything else is raw UTF-8. Invalid UTF-8
// in s (only possible for strings built in Go, never parsed ones) is
// replaced by U+FFFD so the output is always valid.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, "\uFFFD"...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
