package cjson

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// survives the canonical encoding: Parse(Marshal(v)) equals v, Marshal is
// a fixed point, and encoding/json (a lenient, independent parser) reads
// the input as the same value. The seed corpus is testdata/fuzz/FuzzParse
// plus the spec examples in testdata/canonical.
func FuzzParse(f *testing.F) {
	ins, err := filepath.Glob(filepath.Join("testdata", "canonical", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range ins {
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data)
		if err != nil {
			return
		}
		m := Marshal(v)
		if !utf8.Valid(m) {
			t.Fatalf("Marshal produced invalid UTF-8: %q", m)
		}
		v2, err := Parse(m)
		if err != nil {
			t.Fatalf("Parse(Marshal(v)) failed: %v\ninput %q\ncanonical %q", err, data, m)
		}
		if !v2.Equal(v) {
			t.Fatalf("Parse(Marshal(v)) != v\ninput %q\ncanonical %q\nreparsed %q", data, m, Marshal(v2))
		}
		if m2 := Marshal(v2); !bytes.Equal(m2, m) {
			t.Fatalf("Marshal not idempotent\nfirst  %q\nsecond %q", m, m2)
		}
		// Differential check against encoding/json: anything strict
		// parsing accepts is JSON, and means the same thing.
		if !json.Valid(data) {
			t.Fatalf("Parse accepted %q, which encoding/json says is not JSON", data)
		}
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var std any
		if err := d.Decode(&std); err != nil {
			t.Fatalf("encoding/json cannot decode %q: %v", data, err)
		}
		if msg := sameAsStd(v, std); msg != "" {
			t.Fatalf("Parse and encoding/json disagree on %q: %s", data, msg)
		}
	})
}

// sameAsStd compares v with what encoding/json (with UseNumber) decoded.
// Numbers are compared as float64, which is exact for ±(2^53-1).
func sameAsStd(v Value, std any) string {
	switch s := std.(type) {
	case nil:
		if v.Kind() != Null {
			return "null vs " + v.Kind().String()
		}
	case bool:
		if b, ok := v.Bool(); !ok || b != s {
			return "bool mismatch"
		}
	case json.Number:
		n, ok := v.Int()
		if !ok {
			return "number vs " + v.Kind().String()
		}
		f, err := strconv.ParseFloat(string(s), 64)
		if err != nil || f != float64(n) {
			return "number " + string(s) + " parsed as " + strconv.FormatInt(n, 10)
		}
	case string:
		if str, ok := v.Str(); !ok || str != s {
			return strconv.Quote(s) + " vs " + v.String()
		}
	case []any:
		arr := v.Array()
		if v.Kind() != Array || len(arr) != len(s) {
			return "array mismatch"
		}
		for i := range s {
			if msg := sameAsStd(arr[i], s[i]); msg != "" {
				return msg
			}
		}
	case map[string]any:
		if v.Kind() != Object || v.Len() != len(s) {
			return "object mismatch"
		}
		for k, e := range s {
			m, ok := v.Get(k)
			if !ok {
				return "missing key " + strconv.Quote(k)
			}
			if msg := sameAsStd(m, e); msg != "" {
				return msg
			}
		}
	default:
		return "unexpected type from encoding/json"
	}
	return ""
}
