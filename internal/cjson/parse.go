package cjson

import (
	"fmt"
	"sort"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is the largest number of arrays and objects that may nest, so
// hostile input cannot exhaust the stack. Events are limited to 65,536
// bytes by the spec; real content nests a handful of levels.
const MaxDepth = 256

// SyntaxError describes why input is not acceptable JSON, and where.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("cjson: %s at offset %d", e.Msg, e.Offset)
}

// Parse reads one JSON value strictly: it rejects invalid UTF-8, lone UTF-16
// surrogates in escapes, duplicate object keys, numbers that are not
// integers or lie outside ±MaxSafeInt, nesting beyond MaxDepth, and trailing
// data. Insignificant whitespace is accepted (network JSON is not always
// canonical); Marshal of the result is the canonical form.
//
// Numbers written with a fraction or exponent are accepted when their value
// is an exact integer in range: the spec's own canonical JSON example maps
// {"a": -0, "b": 1e10} to {"a":0,"b":10000000000} (appendices, "Canonical
// JSON", Examples). 1.5 or 1e-3 are floats and are refused.
func Parse(data []byte) (Value, error) {
	p := parser{data: data}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return Value{}, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return Value{}, p.errf("trailing data after JSON value")
	}
	return v, nil
}

// Canonicalize parses data strictly and returns its canonical encoding.
func Canonicalize(data []byte) ([]byte, error) {
	v, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return Marshal(v), nil
}

type parser struct {
	data []byte
	pos  int
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value reads one value; depth is the number of arrays and objects that
// enclose it.
func (p *parser) value(depth int) (Value, error) {
	if p.pos >= len(p.data) {
		return Value{}, p.errf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{' || c == '[':
		// The limit counts containers, not values: MaxDepth nested
		// arrays are accepted whether the innermost one is empty or
		// holds a scalar.
		if depth >= MaxDepth {
			return Value{}, p.errf("nesting deeper than %d", MaxDepth)
		}
		if c == '{' {
			return p.object(depth)
		}
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return Value{}, err
		}
		return Value{kind: String, s: s}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", Value{kind: Bool, b: true})
	case c == 'f':
		return p.literal("false", Value{kind: Bool})
	case c == 'n':
		return p.literal("null", Value{})
	default:
		return Value{}, p.errf("unexpected character %q", c)
	}
}

func (p *parser) literal(word string, v Value) (Value, error) {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return Value{}, p.errf("invalid literal")
	}
	p.pos += len(word)
	return v, nil
}

func (p *parser) object(depth int) (Value, error) {
	p.pos++ // '{'
	var members []Member
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return Value{kind: Object, obj: []Member{}}, nil
	}
	sorted := true
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return Value{}, p.errf("expected object key")
		}
		key, err := p.str()
		if err != nil {
			return Value{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return Value{}, p.errf("expected ':' after object key")
		}
		p.pos++
		p.skipSpace()
		val, err := p.value(depth + 1)
		if err != nil {
			return Value{}, err
		}
		if n := len(members); n > 0 && members[n-1].Key >= key {
			sorted = false
		}
		members = append(members, Member{Key: key, Value: val})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return Value{}, p.errf("unterminated object")
		}
		if p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.data[p.pos] == '}' {
			p.pos++
			break
		}
		return Value{}, p.errf("expected ',' or '}' in object")
	}
	if !sorted {
		// Go compares strings bytewise, and UTF-8 byte order is Unicode
		// code point order, which is the order canonical JSON asks for.
		sort.SliceStable(members, func(i, j int) bool { return members[i].Key < members[j].Key })
	}
	for i := 1; i < len(members); i++ {
		if members[i].Key == members[i-1].Key {
			return Value{}, p.errf("duplicate object key %q", members[i].Key)
		}
	}
	return Value{kind: Object, obj: members}, nil
}

func (p *parser) array(depth int) (Value, error) {
	p.pos++ // '['
	elems := []Value{}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return Value{kind: Array, arr: elems}, nil
	}
	for {
		p.skipSpace()
		v, err := p.value(depth + 1)
		if err != nil {
			return Value{}, err
		}
		elems = append(elems, v)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return Value{}, p.errf("unterminated array")
		}
		if p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.data[p.pos] == ']' {
			p.pos++
			return Value{kind: Array, arr: elems}, nil
		}
		return Value{}, p.errf("expected ',' or ']' in array")
	}
}

// str reads a quoted string starting at p.pos.
func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes, all ASCII printable or valid UTF-8.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := p.data[start:p.pos]
			p.pos++
			return string(s), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", p.errf("control character in string")
		}
		if c < utf8.RuneSelf {
			p.pos++
			continue
		}
		r, size := utf8.DecodeRune(p.data[p.pos:])
		if r == utf8.RuneError && size <= 1 {
			return "", p.errf("invalid UTF-8 in string")
		}
		p.pos += size
	}
	buf := append([]byte(nil), p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c == '\\':
			p.pos++
			if p.pos >= len(p.data) {
				return "", p.errf("unterminated escape")
			}
			e := p.data[p.pos]
			p.pos++
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, err := p.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate must be followed by an escaped low
					// surrogate; anything else has no UTF-8 encoding.
					if r >= 0xDC00 || p.pos+6 > len(p.data) || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
						return "", p.errf("lone UTF-16 surrogate in string")
					}
					p.pos += 2
					r2, err := p.hex4()
					if err != nil {
						return "", err
					}
					r = utf16.DecodeRune(r, r2)
					if r == utf8.RuneError {
						return "", p.errf("invalid UTF-16 surrogate pair in string")
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", p.errf("invalid escape \\%c", e)
			}
		case c < 0x20:
			return "", p.errf("control character in string")
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.errf("invalid UTF-8 in string")
			}
			buf = append(buf, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
	return "", p.errf("unterminated string")
}

func (p *parser) hex4() (rune, error) {
	if p.pos+4 > len(p.data) {
		return 0, p.errf("short \\u escape")
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, p.errf("invalid hex digit in \\u escape")
		}
	}
	p.pos += 4
	return r, nil
}

// number reads an RFC 8259 number and accepts it only if its value is an
// integer within ±MaxSafeInt.
func (p *parser) number() (Value, error) {
	start := p.pos
	neg := false
	if p.data[p.pos] == '-' {
		neg = true
		p.pos++
	}
	intStart := p.pos
	if p.pos >= len(p.data) {
		return Value{}, p.errf("invalid number")
	}
	if p.data[p.pos] == '0' {
		p.pos++
	} else if p.data[p.pos] >= '1' && p.data[p.pos] <= '9' {
		for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
			p.pos++
		}
	} else {
		return Value{}, p.errf("invalid number")
	}
	intDigits := p.data[intStart:p.pos]
	var fracDigits []byte
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		fs := p.pos
		for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
			p.pos++
		}
		if p.pos == fs {
			return Value{}, p.errf("invalid number: no digits after '.'")
		}
		fracDigits = p.data[fs:p.pos]
	}
	exp := 0
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		eneg := false
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			eneg = p.data[p.pos] == '-'
			p.pos++
		}
		es := p.pos
		for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
			if exp < 1_000_000 { // anything larger is out of range anyway
				exp = exp*10 + int(p.data[p.pos]-'0')
			}
			p.pos++
		}
		if p.pos == es {
			return Value{}, p.errf("invalid number: no digits in exponent")
		}
		if eneg {
			exp = -exp
		}
	}
	// The value is digits(int ++ frac) * 10^(exp - len(frac)). Strip
	// trailing zeros into the exponent, then it is an integer iff the
	// exponent is non-negative.
	digits := make([]byte, 0, len(intDigits)+len(fracDigits))
	digits = append(digits, intDigits...)
	digits = append(digits, fracDigits...)
	e := exp - len(fracDigits)
	for len(digits) > 1 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		e++
	}
	for len(digits) > 1 && digits[0] == '0' {
		digits = digits[1:]
	}
	if len(digits) == 1 && digits[0] == '0' {
		return Value{kind: Int, n: 0}, nil // also turns -0 into 0
	}
	if e < 0 {
		p.pos = start
		return Value{}, p.errf("number is not an integer (floats are not allowed in canonical JSON)")
	}
	if len(digits)+e > 16 { // 2^53 has 16 digits
		p.pos = start
		return Value{}, p.errf("integer out of range ±(2^53-1)")
	}
	var n int64
	for _, d := range digits {
		n = n*10 + int64(d-'0')
	}
	for ; e > 0; e-- {
		n *= 10
	}
	if n > MaxSafeInt {
		p.pos = start
		return Value{}, p.errf("integer out of range ±(2^53-1)")
	}
	if neg {
		n = -n
	}
	return Value{kind: Int, n: n}, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
