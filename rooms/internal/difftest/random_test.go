package difftest

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// Awkward string pieces for canonical JSON: escapes with short forms,
// other control characters, quotes, backslashes, slashes, HTML-ish
// characters encoding/json likes to escape, multi-byte UTF-8, astral
// characters (surrogate pairs when escaped), U+2028/U+2029, DEL and
// U+FFFD.
var stringPieces = []string{
	"a", "Z", "0", " ", "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f",
	"<", ">", "&", "é", "ü", "日本", "\u2028", "\u2029", "\U0001F600", "\U0001D11E", "\uFFFD", "\uFEFF",
}

func randomString(rng *rand.Rand) string {
	var b strings.Builder
	for i, n := 0, rng.IntN(6); i < n; i++ {
		b.WriteString(stringPieces[rng.IntN(len(stringPieces))])
	}
	return b.String()
}

var intPool = []int64{0, 1, -1, 7, 100, -100, 1 << 31, -(1 << 31), 1<<53 - 1, -(1<<53 - 1), 1e15}

// randomJSON returns a random JSON value nesting at most depth levels.
func randomJSON(rng *rand.Rand, depth int) cjson.Value {
	k := rng.IntN(8)
	if depth <= 0 {
		k = rng.IntN(5)
	}
	switch k {
	case 0:
		return cjson.NullValue()
	case 1:
		return cjson.Boolean(rng.IntN(2) == 0)
	case 2:
		return cjson.Integer(intPool[rng.IntN(len(intPool))])
	case 3, 4:
		return cjson.Str(randomString(rng))
	case 5:
		var vs []cjson.Value
		for i, n := 0, rng.IntN(4); i < n; i++ {
			vs = append(vs, randomJSON(rng, depth-1))
		}
		return cjson.Arr(vs...)
	default:
		o := cjson.Obj()
		for i, n := 0, rng.IntN(5); i < n; i++ {
			key := randomString(rng)
			if rng.IntN(2) == 0 {
				key = fmt.Sprintf("k%d", rng.IntN(10))
			}
			o = o.With(key, randomJSON(rng, depth-1))
		}
		return o
	}
}

// looseJSON writes v as valid but non-canonical JSON: shuffled keys,
// random whitespace, \u escapes (including surrogate pairs) for some
// characters, escaped slashes, exponent and fraction forms of integers.
func looseJSON(rng *rand.Rand, v cjson.Value) string {
	var b strings.Builder
	writeLoose(rng, &b, v)
	return b.String()
}

func ws(rng *rand.Rand, b *strings.Builder) {
	for i, n := 0, rng.IntN(3); i < n; i++ {
		b.WriteByte(" \t\n\r"[rng.IntN(4)])
	}
}

func writeLoose(rng *rand.Rand, b *strings.Builder, v cjson.Value) {
	ws(rng, b)
	switch v.Kind() {
	case cjson.Object:
		ms := append([]cjson.Member(nil), v.Members()...)
		rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		b.WriteByte('{')
		for i, m := range ms {
			if i > 0 {
				b.WriteByte(',')
			}
			ws(rng, b)
			writeLooseString(rng, b, m.Key)
			ws(rng, b)
			b.WriteByte(':')
			writeLoose(rng, b, m.Value)
		}
		ws(rng, b)
		b.WriteByte('}')
	case cjson.Array:
		b.WriteByte('[')
		for i, e := range v.Array() {
			if i > 0 {
				b.WriteByte(',')
			}
			writeLoose(rng, b, e)
		}
		ws(rng, b)
		b.WriteByte(']')
	case cjson.String:
		s, _ := v.Str()
		writeLooseString(rng, b, s)
	case cjson.Int:
		n, _ := v.Int()
		b.WriteString(fmt.Sprint(n))
	default:
		b.WriteString(v.String())
	}
	ws(rng, b)
}

func writeLooseString(rng *rand.Rand, b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '/' && rng.IntN(2) == 0:
			b.WriteString(`\/`)
		case r < 0x20 || rng.IntN(4) == 0:
			if r > 0xFFFF {
				r -= 0x10000
				fmt.Fprintf(b, `\u%04X\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
			} else {
				fmt.Fprintf(b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}
