package cjson

import (
	"sort"
	"strings"
)

// Kind is the JSON type of a Value.
type Kind uint8

// The JSON kinds. Matrix canonical JSON has no floating-point numbers, so
// every number is an Int.
const (
	Null Kind = iota
	Bool
	Int
	String
	Array
	Object
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "boolean"
	case Int:
		return "integer"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return "invalid"
}

// MaxSafeInt is the largest integer canonical JSON may carry, 2^53-1; its
// negation is the smallest.
const MaxSafeInt = 1<<53 - 1

// Value is one immutable JSON value. The zero Value is null. Objects keep
// their members sorted by key, which is canonical order, so Marshal never
// sorts and Get is a binary search.
type Value struct {
	kind Kind
	b    bool
	n    int64
	s    string
	arr  []Value
	obj  []Member
}

// Member is one key and value of an object.
type Member struct {
	Key   string
	Value Value
}

// Str returns a string value.
func Str(s string) Value { return Value{kind: String, s: s} }

// Integer returns an integer value. Values outside ±MaxSafeInt are not
// representable in canonical JSON; Marshal of such a value is the caller's
// bug, so FromGo and the parser refuse them instead.
func Integer(n int64) Value { return Value{kind: Int, n: n} }

// Boolean returns true or false.
func Boolean(b bool) Value { return Value{kind: Bool, b: b} }

// NullValue returns null.
func NullValue() Value { return Value{} }

// Arr returns an array of the given values.
func Arr(vs ...Value) Value { return Value{kind: Array, arr: vs} }

// Obj returns an object of the given members. A later member with the same
// key replaces an earlier one.
func Obj(ms ...Member) Value {
	out := make([]Member, len(ms))
	copy(out, ms)
	// Stable, so that among equal keys the last given stays last.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	n := 0
	for i := range out {
		if n > 0 && out[n-1].Key == out[i].Key {
			out[n-1] = out[i]
			continue
		}
		out[n] = out[i]
		n++
	}
	return Value{kind: Object, obj: out[:n]}
}

// M is shorthand for a Member.
func M(key string, v Value) Member { return Member{Key: key, Value: v} }

// Kind reports the JSON type.
func (v Value) Kind() Kind { return v.kind }

// IsNull reports whether v is null (including the zero Value).
func (v Value) IsNull() bool { return v.kind == Null }

// Bool returns the boolean and whether v is one.
func (v Value) Bool() (bool, bool) { return v.b, v.kind == Bool }

// Int returns the integer and whether v is one.
func (v Value) Int() (int64, bool) { return v.n, v.kind == Int }

// Str returns the string and whether v is one.
func (v Value) Str() (string, bool) { return v.s, v.kind == String }

// Array returns the elements (nil unless v is an array). Callers must not
// modify the slice.
func (v Value) Array() []Value {
	if v.kind != Array {
		return nil
	}
	return v.arr
}

// Members returns the members in canonical order (nil unless v is an
// object). Callers must not modify the slice.
func (v Value) Members() []Member {
	if v.kind != Object {
		return nil
	}
	return v.obj
}

// Len is the number of elements or members.
func (v Value) Len() int {
	switch v.kind {
	case Array:
		return len(v.arr)
	case Object:
		return len(v.obj)
	}
	return 0
}

func (v Value) index(key string) (int, bool) {
	i := sort.Search(len(v.obj), func(i int) bool { return v.obj[i].Key >= key })
	return i, i < len(v.obj) && v.obj[i].Key == key
}

// Get returns the member named key of an object.
func (v Value) Get(key string) (Value, bool) {
	if v.kind != Object {
		return Value{}, false
	}
	i, ok := v.index(key)
	if !ok {
		return Value{}, false
	}
	return v.obj[i].Value, true
}

// Has reports whether an object has a member named key.
func (v Value) Has(key string) bool {
	_, ok := v.Get(key)
	return ok
}

// Path follows object keys: v.Path("content", "membership").
func (v Value) Path(keys ...string) (Value, bool) {
	cur := v
	for _, k := range keys {
		next, ok := cur.Get(k)
		if !ok {
			return Value{}, false
		}
		cur = next
	}
	return cur, true
}

// GetStr returns the string member named key, or "" and false.
func (v Value) GetStr(key string) (string, bool) {
	m, ok := v.Get(key)
	if !ok {
		return "", false
	}
	return m.Str()
}

// GetInt returns the integer member named key.
func (v Value) GetInt(key string) (int64, bool) {
	m, ok := v.Get(key)
	if !ok {
		return 0, false
	}
	return m.Int()
}

// With returns a copy of the object v with key set to val. A non-object v is
// treated as an empty object. v itself is unchanged.
func (v Value) With(key string, val Value) Value {
	var src []Member
	if v.kind == Object {
		src = v.obj
	}
	i, found := Value{kind: Object, obj: src}.index(key)
	out := make([]Member, 0, len(src)+1)
	out = append(out, src[:i]...)
	out = append(out, Member{Key: key, Value: val})
	if found {
		out = append(out, src[i+1:]...)
	} else {
		out = append(out, src[i:]...)
	}
	return Value{kind: Object, obj: out}
}

// Without returns a copy of the object v without the named keys.
func (v Value) Without(keys ...string) Value {
	if v.kind != Object {
		return v
	}
	out := make([]Member, 0, len(v.obj))
	for _, m := range v.obj {
		drop := false
		for _, k := range keys {
			if m.Key == k {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, m)
		}
	}
	return Value{kind: Object, obj: out}
}

// Only returns a copy of the object v keeping only the named keys.
func (v Value) Only(keys ...string) Value {
	if v.kind != Object {
		return Value{kind: Object}
	}
	out := make([]Member, 0, len(keys))
	for _, m := range v.obj {
		for _, k := range keys {
			if m.Key == k {
				out = append(out, m)
				break
			}
		}
	}
	return Value{kind: Object, obj: out}
}

// Equal reports deep equality.
func (v Value) Equal(o Value) bool {
	if v.kind != o.kind {
		return false
	}
	switch v.kind {
	case Null:
		return true
	case Bool:
		return v.b == o.b
	case Int:
		return v.n == o.n
	case String:
		return v.s == o.s
	case Array:
		if len(v.arr) != len(o.arr) {
			return false
		}
		for i := range v.arr {
			if !v.arr[i].Equal(o.arr[i]) {
				return false
			}
		}
		return true
	case Object:
		if len(v.obj) != len(o.obj) {
			return false
		}
		for i := range v.obj {
			if v.obj[i].Key != o.obj[i].Key || !v.obj[i].Value.Equal(o.obj[i].Value) {
				return false
			}
		}
		return true
	}
	return false
}

// String returns the canonical encoding, for logs and tests.
func (v Value) String() string {
	var sb strings.Builder
	sb.Write(Marshal(v))
	return sb.String()
}
