package cjson

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCanonicalizeSpecExamples runs every example of appendices,
// "Canonical JSON", "Examples" (testdata/canonical, verbatim).
func TestCanonicalizeSpecExamples(t *testing.T) {
	ins, err := filepath.Glob(filepath.Join("testdata", "canonical", "*.in.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 10 {
		t.Fatalf("found %d spec examples in testdata/canonical, want 10", len(ins))
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(in, ".in.json") + ".want.json")
			if err != nil {
				t.Fatal(err)
			}
			got, err := Canonicalize(input)
			if err != nil {
				t.Fatalf("Canonicalize: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Canonicalize:\n got %s\nwant %s", got, want)
			}
			// The canonical form is a fixed point.
			again, err := Canonicalize(got)
			if err != nil {
				t.Fatalf("Canonicalize(canonical): %v", err)
			}
			if !bytes.Equal(again, want) {
				t.Errorf("Canonicalize(canonical):\n got %s\nwant %s", again, want)
			}
		})
	}
}

// TestParseAccepts lists input that Parse must accept, with the canonical
// encoding it must produce.
func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		// Structure and whitespace (insignificant whitespace is accepted on
		// input: RFC 8259 allows space, tab, LF and CR).
		{"empty object", `{}`, `{}`},
		{"empty array", `[]`, `[]`},
		{"nested empties", `{"a":{},"b":[[],{}]}`, `{"a":{},"b":[[],{}]}`},
		{"whitespace everywhere", " \t\r\n{ \"a\" :\t[ 1 ,\n2 ] , \"b\" : { } }\r\n ", `{"a":[1,2],"b":{}}`},
		{"top-level true", `true`, `true`},
		{"top-level false", ` false `, `false`},
		{"top-level null", "null\n", `null`},
		{"top-level integer", `42`, `42`},
		{"top-level string", `"x"`, `"x"`},
		{"array order kept", `[3,1,2]`, `[3,1,2]`},

		// Strings: escapes decode, and only '"', '\' and controls are
		// escaped again (appendices, "Canonical JSON", Grammar).
		{"escaped solidus decodes", `"a\/b"`, `"a/b"`},
		{"raw solidus", `"a/b"`, `"a/b"`},
		{"short escapes", `"\"\\\b\f\n\r\t"`, `"\"\\\b\f\n\r\t"`},
		{"unicode escape of ASCII", `"\u0041\u0062"`, `"Ab"`},
		{"upper-case hex escape", `"\u00E9"`, `"é"`},
		{"lower-case hex escape", `"\u00e9"`, `"é"`},
		{"escaped control re-escaped lower-case", `"\u001F\u001b"`, `"\u001f\u001b"`},
		{"escaped NUL", `"\u0000"`, `"\u0000"`},
		{"escaped short-form control uses short form", `"\u0008\u0009\u000A\u000C\u000D"`, `"\b\t\n\f\r"`},
		{"DEL escaped becomes raw", `"\u007f"`, "\"\x7f\""},
		{"DEL raw", "\"\x7f\"", "\"\x7f\""},
		{"U+2028 and U+2029 escaped become raw", `"\u2028\u2029"`, "\"\u2028\u2029\""},
		{"U+2028 raw", "\"\u2028\"", "\"\u2028\""},
		{"surrogate pair", `"\uD83D\uDE00"`, `"😀"`},
		{"surrogate pair lower-case", `"\ud83d\ude00"`, `"😀"`},
		{"highest code point escaped", `"\uDBFF\uDFFF"`, "\"\U0010FFFF\""},
		{"raw four-byte UTF-8", `"😀"`, `"😀"`},
		{"raw U+FFFD is a real character", "\"\uFFFD\"", "\"\uFFFD\""},
		{"escaped U+FFFD", `"\uFFFD"`, "\"\uFFFD\""},
		{"escapes after raw UTF-8", `"日\n本"`, `"日\n本"`},
		{"escaped key", `{"\u0061":1}`, `{"a":1}`},
		{"empty key", `{"":1}`, `{"":1}`},

		// Numbers: integers in range, and fractions/exponents whose value
		// is an exact integer (the spec's own example maps 1e10 to
		// 10000000000 and -0 to 0).
		{"zero", `0`, `0`},
		{"negative zero", `-0`, `0`},
		{"negative zero fraction", `-0.0`, `0`},
		{"zero with exponent", `0e5`, `0`},
		{"zero with huge exponent", `0e999999999999`, `0`},
		{"zero with negative exponent", `0.000e-7`, `0`},
		{"negative", `-17`, `-17`},
		{"max safe integer", `9007199254740991`, `9007199254740991`},
		{"min safe integer", `-9007199254740991`, `-9007199254740991`},
		{"exponent", `1e10`, `10000000000`},
		{"upper-case exponent", `1E10`, `10000000000`},
		{"explicit positive exponent", `1e+10`, `10000000000`},
		{"trailing zero fraction", `1.0`, `1`},
		{"fraction cancelled by exponent", `1.5e1`, `15`},
		{"leading-zero fraction cancelled by exponent", `0.5e1`, `5`},
		{"negative exponent on trailing zeros", `10E-1`, `1`},
		{"negative exponent on more trailing zeros", `100e-2`, `1`},
		{"negative fraction integer", `-2.50e1`, `-25`},
		{"max safe integer in exponent form", `9.007199254740991e15`, `9007199254740991`},
		{"many fraction zeros", `0.0000000000000000001e19`, `1`},
		{"integers in array", `[1,-1,0]`, `[1,-1,0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonicalize(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonicalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseRejects lists input that Parse must refuse with a *SyntaxError.
func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		// Empty and trailing data.
		{"empty input", ``},
		{"only whitespace", " \n\t"},
		{"two objects", `{}{}`},
		{"two numbers", `1 2`},
		{"trailing word", `{} x`},
		{"extra close bracket", `[1]]`},
		{"trailing comma at top level", `1,`},
		{"byte order mark", "\xEF\xBB\xBF{}"},
		{"vertical tab is not whitespace", "\v{}"},
		{"form feed is not whitespace", "{}\f"},
		{"no-break space is not whitespace", "\u00A0{}"},

		// Structure.
		{"unterminated object", `{`},
		{"unterminated object after member", `{"a":1`},
		{"unterminated array", `[`},
		{"unterminated array after value", `[1`},
		{"trailing comma in array", `[1,]`},
		{"trailing comma in object", `{"a":1,}`},
		{"leading comma in array", `[,1]`},
		{"empty member", `{,}`},
		{"key without value", `{"a"}`},
		{"key without colon", `{"a" 1}`},
		{"colon without value", `{"a":}`},
		{"non-string key", `{1:2}`},
		{"single-quoted key", `{'a':1}`},
		{"bare key", `{a:1}`},
		{"missing comma in array", `[1 2]`},
		{"missing comma in object", `{"a":1 "b":2}`},
		{"lone comma", `,`},
		{"lone colon", `:`},
		{"close brace", `}`},

		// Literals.
		{"truncated true", `tru`},
		{"truncated null", `nul`},
		{"capitalised True", `True`},
		{"longer literal", `nulll`},
		{"NaN", `NaN`},
		{"Infinity", `Infinity`},
		{"negative Infinity", `-Infinity`},

		// Floats are not allowed.
		{"fraction", `1.5`},
		{"small fraction", `0.1`},
		{"negative fraction", `-1.5`},
		{"negative exponent", `1e-1`},
		{"fraction with exponent still fractional", `1.25e1`},
		{"tiny", `1e-400`},
		{"fraction in array", `[1,2.5]`},
		{"fraction in object", `{"a":0.5}`},

		// Integers outside ±(2^53-1).
		{"2^53", `9007199254740992`},
		{"-2^53", `-9007199254740992`},
		{"2^53 in exponent form", `9.007199254740992e15`},
		{"1e16", `1e16`},
		{"1e400", `1e400`},
		{"huge exponent", `1e99999999999999999999`},
		{"20 digits", `99999999999999999999`},
		{"2^63", `9223372036854775808`},
		{"-2^63", `-9223372036854775808`},
		{"2^64", `18446744073709551616`},

		// Malformed numbers.
		{"leading zero", `01`},
		{"negative leading zero", `-01`},
		{"double zero", `00`},
		{"leading zero in array", `[007]`},
		{"lone minus", `-`},
		{"double minus", `--1`},
		{"plus sign", `+1`},
		{"leading dot", `.5`},
		{"trailing dot", `1.`},
		{"dot before exponent", `1.e5`},
		{"empty exponent", `1e`},
		{"exponent sign only", `1e+`},
		{"minus then letter", `-a`},
		{"hex", `0x10`},

		// Strings.
		{"unterminated string", `"abc`},
		{"unterminated after escape", `"abc\`},
		{"unterminated after escaped quote", `"abc\"`},
		{"raw newline", "\"a\nb\""},
		{"raw tab", "\"a\tb\""},
		{"raw NUL", "\"a\x00b\""},
		{"raw 0x1F", "\"\x1f\""},
		{"raw control after escape", "\"\\n\x01\""},
		{"unknown escape", `"\x41"`},
		{"escaped single quote", `"\'"`},
		{"capital U escape", `"\U0041"`},
		{"short unicode escape", `"\u12"`},
		{"short unicode escape at end", `"\u12`},
		{"bad hex digit", `"\u12G4"`},

		// Lone UTF-16 surrogates have no UTF-8 encoding.
		{"lone high surrogate", `"\uD800"`},
		{"lone high surrogate at end of input", `"\uD800`},
		{"lone low surrogate", `"\uDC00"`},
		{"lone last low surrogate", `"\uDFFF"`},
		{"high surrogate then ASCII", `"\uD800x"`},
		{"high surrogate then escaped ASCII", `"\uD800\u0041"`},
		{"high surrogate then short escape", `"\uD800\n"`},
		{"two high surrogates", `"\uD800\uD800"`},
		{"reversed pair", `"\uDC00\uD800"`},
		{"high surrogate then bad escape", `"\uD800\uZZZZ"`},
		{"lone surrogate in key", `{"\uDBFF":1}`},

		// Invalid UTF-8, raw in strings, in the fast path and after an
		// escape, in values and in keys.
		{"overlong slash", "\"\xC0\xAF\""},
		{"overlong NUL", "\"\xC0\x80\""},
		{"overlong three-byte", "\"\xE0\x80\xAF\""},
		{"overlong four-byte", "\"\xF0\x80\x80\xAF\""},
		{"truncated two-byte", "\"\xC3\""},
		{"truncated three-byte", "\"\xE6\x97\""},
		{"truncated four-byte", "\"\xF0\x9F\x98\""},
		{"truncated at end of input", "\"\xE6\x97"},
		{"0xFF", "\"\xFF\""},
		{"0xFE", "\"\xFE\""},
		{"lone continuation byte", "\"\x80\""},
		{"UTF-8 encoded surrogate", "\"\xED\xA0\x80\""},
		{"beyond U+10FFFF", "\"\xF4\x90\x80\x80\""},
		{"invalid UTF-8 after escape", "\"\\n\xFF\""},
		{"invalid UTF-8 in key", "{\"\xFF\":1}"},
		{"invalid UTF-8 outside string", "[1,\xFF]"},

		// Duplicate keys, in order, out of order, via escapes, nested.
		{"duplicate key", `{"a":1,"a":2}`},
		{"duplicate key same value", `{"a":1,"a":1}`},
		{"duplicate key out of order", `{"b":1,"a":2,"b":3}`},
		{"duplicate key far apart", `{"c":1,"b":2,"a":3,"d":4,"c":5}`},
		{"duplicate key via escape", `{"a":1,"\u0061":2}`},
		{"duplicate non-ASCII key", `{"日":1,"本":2,"日":3}`},
		{"duplicate empty key", `{"":1,"":2}`},
		{"duplicate key nested", `{"x":{"a":1,"a":1}}`},
		{"duplicate key in array element", `[{},{"a":1,"a":2}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q) = %s, want error", tt.in, v)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %v is %T, want *SyntaxError", tt.in, err, err)
			}
			if se.Offset < 0 || se.Offset > len(tt.in) {
				t.Errorf("Parse(%q) error offset %d outside input", tt.in, se.Offset)
			}
			if !strings.HasPrefix(err.Error(), "cjson: ") {
				t.Errorf("Parse(%q) error %q lacks the package prefix", tt.in, err)
			}
			if out, err := Canonicalize([]byte(tt.in)); err == nil {
				t.Errorf("Canonicalize(%q) = %q, want error", tt.in, out)
			}
		})
	}
}

func TestParseIntegerValues(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{`9007199254740991`, MaxSafeInt},
		{`-9007199254740991`, -MaxSafeInt},
		{`-0`, 0},
		{`1e10`, 10_000_000_000},
		{`1.0`, 1},
		{`10E-1`, 1},
		{`100e-2`, 1},
		{`123456789e2`, 12_345_678_900},
		{`-1.23e2`, -123},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			got, ok := v.Int()
			if !ok || got != tt.want {
				t.Errorf("Parse(%q).Int() = %d, %v; want %d, true", tt.in, got, ok, tt.want)
			}
		})
	}
}

// TestKeyOrder checks that object keys are sorted by Unicode code point,
// which is not UTF-16 order: U+1F600 (a surrogate pair in UTF-16, D83D
// DE00) sorts after U+E000 and U+FFFD.
func TestKeyOrder(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"ASCII", `{"b":1,"a":2,"c":3}`, `{"a":2,"b":1,"c":3}`},
		{"upper-case before lower-case", `{"a":1,"B":2,"A":3,"b":4}`, `{"A":3,"B":2,"a":1,"b":4}`},
		{"digits and punctuation", `{"a":1,"_":2,"1":3," ":4,"~":5}`, `{" ":4,"1":3,"_":2,"a":1,"~":5}`},
		{"prefix sorts first", `{"ab":1,"a\u0000":2,"a":3,"aa":4}`, `{"a":3,"a\u0000":2,"aa":4,"ab":1}`},
		{"empty key first", `{"a":1,"":2}`, `{"":2,"a":1}`},
		{"mixed ASCII and Unicode", `{"z":1,"é":2,"a":3,"Z":4,"":5}`, `{"":5,"Z":4,"a":3,"z":1,"é":2}`},
		{"BMP by code point", `{"本":2,"日":1,"é":3}`, `{"é":3,"日":1,"本":2}`},
		{"non-BMP after private use and U+FFFD", "{\"😀\":1,\"\uFFFD\":2,\"\uE000\":3,\"\u00FF\":4}", "{\"\u00FF\":4,\"\uE000\":3,\"\uFFFD\":2,\"😀\":1}"},
		{"non-BMP among themselves", "{\"\U0010FFFF\":1,\"\U0001F600\":2,\"\U00010000\":3}", "{\"\U00010000\":3,\"\U0001F600\":2,\"\U0010FFFF\":1}"},
		{"escaped keys sort by decoded value", `{"\u00e9":1,"\uD83D\uDE00":2,"e":3}`, `{"e":3,"é":1,"😀":2}`},
		{"nested objects sorted too", `{"b":{"y":1,"x":2},"a":[{"d":1,"c":2}]}`, `{"a":[{"c":2,"d":1}],"b":{"x":2,"y":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonicalize(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonicalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestDepthLimit checks that exactly MaxDepth levels of arrays or objects
// are accepted, whatever the innermost value is.
func TestDepthLimit(t *testing.T) {
	arrays := func(n int, inner string) string {
		return strings.Repeat("[", n) + inner + strings.Repeat("]", n)
	}
	objects := func(n int, inner string) string {
		return strings.Repeat(`{"a":`, n-1) + "{" + inner + "}" + strings.Repeat("}", n-1)
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"arrays at limit, empty", arrays(MaxDepth, ""), true},
		{"arrays at limit, scalar inside", arrays(MaxDepth, "1"), true},
		{"arrays at limit, string inside", arrays(MaxDepth, `"x"`), true},
		{"arrays over limit, empty", arrays(MaxDepth+1, ""), false},
		{"arrays over limit, scalar inside", arrays(MaxDepth+1, "1"), false},
		{"objects at limit, empty", objects(MaxDepth, ""), true},
		{"objects at limit, member inside", objects(MaxDepth, `"k":null`), true},
		{"objects over limit, empty", objects(MaxDepth+1, ""), false},
		{"objects over limit, member inside", objects(MaxDepth+1, `"k":null`), false},
		{"far over limit", arrays(100_000, ""), false},
		{"unterminated far over limit", strings.Repeat("[", 100_000), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Errorf("Parse(%d bytes) error = %v, want ok=%v", len(tt.in), err, tt.ok)
			}
		})
	}
}

func TestSyntaxErrorOffset(t *testing.T) {
	tests := []struct {
		in     string
		offset int
	}{
		{`{} x`, 3},
		{`[1,2.5]`, 3},
		{`{"a":1,"a":2}`, 13},
		{`"\uD800"`, 7},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error = %v, want *SyntaxError", tt.in, err)
			}
			if se.Offset != tt.offset {
				t.Errorf("Parse(%q) offset = %d (%v), want %d", tt.in, se.Offset, err, tt.offset)
			}
		})
	}
}
