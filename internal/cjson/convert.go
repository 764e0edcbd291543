package cjson

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"unicode/utf8"
)

// FromGo converts a Go value built by our own code (content we author, not
// bytes we received) into a Value. It understands Value, json.RawMessage,
// map[string]any, []any, strings, bools, nil and the integer types directly;
// anything else goes through encoding/json once and is then parsed
// strictly, so floats and out-of-range integers are refused either way.
// Strings and keys that are not valid UTF-8 are refused too: Marshal would
// have to replace their bad bytes, and two keys differing only there would
// collapse into a duplicate key.
func FromGo(x any) (Value, error) {
	switch t := x.(type) {
	case nil:
		return Value{}, nil
	case Value:
		return t, nil
	case *Value:
		if t == nil {
			return Value{}, nil
		}
		return *t, nil
	case json.RawMessage:
		return Parse(t)
	case string:
		return strValue(t)
	case bool:
		return Boolean(t), nil
	case int:
		return intValue(int64(t))
	case int64:
		return intValue(t)
	case int32:
		return intValue(int64(t))
	case uint32:
		return intValue(int64(t))
	case float64:
		if t != math.Trunc(t) || math.Abs(t) > MaxSafeInt {
			return Value{}, fmt.Errorf("cjson: %v is not an integer within ±(2^53-1)", t)
		}
		return Integer(int64(t)), nil
	case []string:
		out := make([]Value, len(t))
		for i, s := range t {
			v, err := strValue(s)
			if err != nil {
				return Value{}, err
			}
			out[i] = v
		}
		return Value{kind: Array, arr: out}, nil
	case []any:
		out := make([]Value, len(t))
		for i, e := range t {
			v, err := FromGo(e)
			if err != nil {
				return Value{}, err
			}
			out[i] = v
		}
		return Value{kind: Array, arr: out}, nil
	case map[string]any:
		ms := make([]Member, 0, len(t))
		for k, e := range t {
			if !utf8.ValidString(k) {
				return Value{}, fmt.Errorf("cjson: object key %q is not valid UTF-8", k)
			}
			v, err := FromGo(e)
			if err != nil {
				return Value{}, err
			}
			ms = append(ms, Member{Key: k, Value: v})
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].Key < ms[j].Key })
		return Value{kind: Object, obj: ms}, nil
	case map[string]string:
		ms := make([]Member, 0, len(t))
		for k, s := range t {
			if !utf8.ValidString(k) {
				return Value{}, fmt.Errorf("cjson: object key %q is not valid UTF-8", k)
			}
			v, err := strValue(s)
			if err != nil {
				return Value{}, err
			}
			ms = append(ms, Member{Key: k, Value: v})
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].Key < ms[j].Key })
		return Value{kind: Object, obj: ms}, nil
	}
	b, err := json.Marshal(x)
	if err != nil {
		return Value{}, fmt.Errorf("cjson: %w", err)
	}
	return Parse(b)
}

// MustFromGo is FromGo for literals in tests and static tables; it panics on
// error, so never call it on input.
func MustFromGo(x any) Value {
	v, err := FromGo(x)
	if err != nil {
		panic(err)
	}
	return v
}

func strValue(s string) (Value, error) {
	if !utf8.ValidString(s) {
		return Value{}, fmt.Errorf("cjson: string %q is not valid UTF-8", s)
	}
	return Str(s), nil
}

func intValue(n int64) (Value, error) {
	if n > MaxSafeInt || n < -MaxSafeInt {
		return Value{}, fmt.Errorf("cjson: integer %d out of range ±(2^53-1)", n)
	}
	return Integer(n), nil
}

// MarshalJSON lets a Value sit inside structs encoded by encoding/json; it
// emits the canonical form.
func (v Value) MarshalJSON() ([]byte, error) { return Marshal(v), nil }

// UnmarshalJSON parses strictly.
func (v *Value) UnmarshalJSON(b []byte) error {
	p, err := Parse(b)
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// Decode unmarshals v into a Go value with encoding/json. Use it for reading
// content into typed structs; never for bytes that will be hashed or signed.
func (v Value) Decode(dst any) error {
	return json.Unmarshal(Marshal(v), dst)
}
