package cjson

import (
	"fmt"
	"testing"
)

// TestControlCharacterEscaping checks every control character U+0000 to
// U+001F against the Grammar of appendices, "Canonical JSON": the short
// forms \b \t \n \f \r where they exist, \u00XX with lower-case hex
// otherwise. The escapes are parsed and re-encoded, and also encoded
// directly from a Go string.
func TestControlCharacterEscaping(t *testing.T) {
	short := map[byte]string{0x08: `\b`, 0x09: `\t`, 0x0A: `\n`, 0x0C: `\f`, 0x0D: `\r`}
	for c := byte(0); c < 0x20; c++ {
		want, ok := short[c]
		if !ok {
			want = fmt.Sprintf(`\u%04x`, c)
		}
		want = `"` + want + `"`
		t.Run(fmt.Sprintf("U+%04X", c), func(t *testing.T) {
			if got := string(AppendString(nil, string([]byte{c}))); got != want {
				t.Errorf("AppendString(%q) = %s, want %s", c, got, want)
			}
			for _, in := range []string{fmt.Sprintf(`"\u%04x"`, c), fmt.Sprintf(`"\u%04X"`, c), want} {
				got, err := Canonicalize([]byte(in))
				if err != nil {
					t.Fatalf("Canonicalize(%s): %v", in, err)
				}
				if string(got) != want {
					t.Errorf("Canonicalize(%s) = %s, want %s", in, got, want)
				}
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", `""`},
		{"plain", "hello", `"hello"`},
		{"quote", `a"b`, `"a\"b"`},
		{"backslash", `a\b`, `"a\\b"`},
		{"solidus raw", "a/b", `"a/b"`},
		{"DEL raw", "\x7f", "\"\x7f\""},
		{"U+0080 raw", "\u0080", "\"\u0080\""},
		{"U+2028 raw", "\u2028", "\"\u2028\""},
		{"U+2029 raw", "\u2029", "\"\u2029\""},
		{"BMP raw", "日本語", `"日本語"`},
		{"non-BMP raw", "😀", `"😀"`},
		{"HTML characters raw", "<a>&", `"<a>&"`},
		{"mixed", "a\x00b\"c\\d\ne日", `"a\u0000b\"c\\d\ne日"`},
		// Strings built in Go may be invalid UTF-8; the output must still
		// be valid, so such bytes become U+FFFD.
		{"invalid byte replaced", "a\xffb", "\"a\uFFFDb\""},
		{"truncated sequence replaced", "\xe6\x97", "\"\uFFFD\uFFFD\""},
		{"encoded surrogate replaced", "\xed\xa0\x80", "\"\uFFFD\uFFFD\uFFFD\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendString([]byte("prefix:"), tt.in)
			if string(got) != "prefix:"+tt.want {
				t.Errorf("AppendString(%q) = %q, want %q", tt.in, got, "prefix:"+tt.want)
			}
			if _, err := Parse(got[len("prefix:"):]); err != nil {
				t.Errorf("output %q does not parse: %v", got, err)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"zero Value is null", Value{}, `null`},
		{"null", NullValue(), `null`},
		{"true", Boolean(true), `true`},
		{"false", Boolean(false), `false`},
		{"zero", Integer(0), `0`},
		{"negative", Integer(-MaxSafeInt), `-9007199254740991`},
		{"string", Str("x"), `"x"`},
		{"empty array", Arr(), `[]`},
		{"array", Arr(Integer(1), Str("a"), NullValue()), `[1,"a",null]`},
		{"empty object", Obj(), `{}`},
		{"object sorted on build", Obj(M("b", Integer(1)), M("a", Integer(2))), `{"a":2,"b":1}`},
		{"later member wins", Obj(M("a", Integer(1)), M("a", Integer(2))), `{"a":2}`},
		{"non-BMP key order", Obj(M("😀", Integer(1)), M("\uFFFD", Integer(2))), "{\"\uFFFD\":2,\"😀\":1}"},
		{"nested", Obj(M("a", Arr(Obj(M("y", Boolean(true)), M("x", Str("\n")))))), `{"a":[{"x":"\n","y":true}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Marshal(tt.v)); got != tt.want {
				t.Errorf("Marshal = %s, want %s", got, tt.want)
			}
			if got := string(Append([]byte("x"), tt.v)); got != "x"+tt.want {
				t.Errorf("Append = %s, want x%s", got, tt.want)
			}
			if got := tt.v.String(); got != tt.want {
				t.Errorf("String = %s, want %s", got, tt.want)
			}
			back, err := Parse(Marshal(tt.v))
			if err != nil {
				t.Fatalf("Parse(Marshal): %v", err)
			}
			if !back.Equal(tt.v) {
				t.Errorf("Parse(Marshal) = %s, want %s", back, tt.v)
			}
		})
	}
}
