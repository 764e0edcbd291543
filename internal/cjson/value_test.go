package cjson

import (
	"encoding/json"
	"math"
	"testing"
)

func mustParse(t testing.TB, s string) Value {
	t.Helper()
	v, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return v
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    Kind
		want string
	}{
		{Null, "null"}, {Bool, "boolean"}, {Int, "integer"}, {String, "string"},
		{Array, "array"}, {Object, "object"}, {Kind(99), "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.k.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q, want %q", tt.k, got, tt.want)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	v := mustParse(t, `{"s":"x","n":7,"b":true,"z":null,"a":[1,2],"o":{"p":{"q":"deep"}}}`)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"Kind", v.Kind(), Object},
		{"Len object", v.Len(), 6},
		{"Len array", mustParse(t, `[1,2,3]`).Len(), 3},
		{"Len scalar", Str("abc").Len(), 0},
		{"Has present", v.Has("z"), true},
		{"Has absent", v.Has("nope"), false},
		{"Has on non-object", Str("s").Has("s"), false},
		{"GetStr", first(v.GetStr("s")), "x"},
		{"GetStr ok", second(v.GetStr("s")), true},
		{"GetStr wrong type", second(v.GetStr("n")), false},
		{"GetStr absent", second(v.GetStr("nope")), false},
		{"GetInt", first(v.GetInt("n")), int64(7)},
		{"GetInt wrong type", second(v.GetInt("s")), false},
		{"GetInt absent", second(v.GetInt("nope")), false},
		{"Bool", first(mustGet(t, v, "b").Bool()), true},
		{"Bool wrong type", second(Str("true").Bool()), false},
		{"Int wrong type", second(Str("1").Int()), false},
		{"Str wrong type", second(Integer(1).Str()), false},
		{"IsNull null member", mustGet(t, v, "z").IsNull(), true},
		{"IsNull string", Str("").IsNull(), false},
		{"Array len", len(mustGet(t, v, "a").Array()), 2},
		{"Array of non-array", Str("x").Array() == nil, true},
		{"Members of non-object", Arr().Members() == nil, true},
		{"Members order", mustGet(t, v, "o").Members()[0].Key, "p"},
		{"Path deep", pathStr(v, "o", "p", "q"), "deep"},
		{"Path through non-object", second(v.Path("s", "x")), false},
		{"Path missing", second(v.Path("o", "nope")), false},
		{"Path empty is self", first(v.Path()).Equal(v), true},
		{"Get on array", second(Arr(Str("a")).Get("a")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func first[A, B any](a A, _ B) A  { return a }
func second[A, B any](_ A, b B) B { return b }

func mustGet(t *testing.T, v Value, key string) Value {
	t.Helper()
	m, ok := v.Get(key)
	if !ok {
		t.Fatalf("no member %q in %s", key, v)
	}
	return m
}

func pathStr(v Value, keys ...string) string {
	p, _ := v.Path(keys...)
	s, _ := p.Str()
	return s
}

// TestBuildersDoNotModify checks that With, Without and Only return new
// objects and leave the receiver alone: parsed events are shared.
func TestBuildersDoNotModify(t *testing.T) {
	const orig = `{"a":1,"c":3,"e":5}`
	tests := []struct {
		name string
		f    func(Value) Value
		want string
	}{
		{"With new key in middle", func(v Value) Value { return v.With("b", Integer(2)) }, `{"a":1,"b":2,"c":3,"e":5}`},
		{"With new key first", func(v Value) Value { return v.With("0", Integer(0)) }, `{"0":0,"a":1,"c":3,"e":5}`},
		{"With new key last", func(v Value) Value { return v.With("z", Integer(0)) }, `{"a":1,"c":3,"e":5,"z":0}`},
		{"With replaces", func(v Value) Value { return v.With("c", Str("x")) }, `{"a":1,"c":"x","e":5}`},
		{"With on non-object", func(Value) Value { return Str("s").With("k", NullValue()) }, `{"k":null}`},
		{"Without some", func(v Value) Value { return v.Without("a", "e", "nope") }, `{"c":3}`},
		{"Without none", func(v Value) Value { return v.Without() }, orig},
		{"Without on non-object", func(Value) Value { return Integer(1).Without("a") }, `1`},
		{"Only some", func(v Value) Value { return v.Only("e", "a", "nope") }, `{"a":1,"e":5}`},
		{"Only none", func(v Value) Value { return v.Only() }, `{}`},
		{"Only on non-object", func(Value) Value { return Integer(1).Only("a") }, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := mustParse(t, orig)
			got := tt.f(v)
			if got.String() != tt.want {
				t.Errorf("result = %s, want %s", got, tt.want)
			}
			if v.String() != orig {
				t.Errorf("receiver changed to %s, want %s", v, orig)
			}
			// Results keep canonical order, so Get still works.
			for _, m := range got.Members() {
				if _, ok := got.Get(m.Key); !ok {
					t.Errorf("Get(%q) on result failed", m.Key)
				}
			}
		})
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"same object different order", `{"a":1,"b":[true,null]}`, `{"b":[true,null],"a":1}`, true},
		{"null", `null`, `null`, true},
		{"different kinds", `1`, `"1"`, false},
		{"bools", `true`, `false`, false},
		{"ints", `1`, `2`, false},
		{"strings", `"a"`, `"b"`, false},
		{"array lengths", `[1]`, `[1,1]`, false},
		{"array elements", `[1,2]`, `[1,3]`, false},
		{"object sizes", `{"a":1}`, `{"a":1,"b":1}`, false},
		{"object keys", `{"a":1}`, `{"b":1}`, false},
		{"object values", `{"a":1}`, `{"a":2}`, false},
		{"empty object vs empty array", `{}`, `[]`, false},
		{"-0 equals 0", `-0`, `0`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := mustParse(t, tt.a), mustParse(t, tt.b)
			if got := a.Equal(b); got != tt.want {
				t.Errorf("%s.Equal(%s) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := b.Equal(a); got != tt.want {
				t.Errorf("%s.Equal(%s) = %v, want %v", tt.b, tt.a, got, tt.want)
			}
		})
	}
	if !Obj().Equal(mustParse(t, `{}`)) {
		t.Errorf("Obj() is not equal to parsed {}")
	}
}

func TestFromGo(t *testing.T) {
	nilValue := (*Value)(nil)
	parsed := mustParse(t, `{"k":[1]}`)
	type sample struct {
		Name  string `json:"name"`
		Count uint64 `json:"count"`
		HTML  string `json:"html"`
	}
	tests := []struct {
		name    string
		in      any
		want    string
		wantErr bool
	}{
		{"nil", nil, `null`, false},
		{"Value", parsed, `{"k":[1]}`, false},
		{"*Value", &parsed, `{"k":[1]}`, false},
		{"nil *Value", nilValue, `null`, false},
		{"RawMessage", json.RawMessage(`{"b":1, "a":2}`), `{"a":2,"b":1}`, false},
		{"RawMessage with float", json.RawMessage(`{"a":1.5}`), ``, true},
		{"string", "x\n", `"x\n"`, false},
		{"bool", true, `true`, false},
		{"int", 42, `42`, false},
		{"int max safe", MaxSafeInt, `9007199254740991`, false},
		{"int over max safe", MaxSafeInt + 1, ``, true},
		{"int64 min safe", int64(-MaxSafeInt), `-9007199254740991`, false},
		{"int64 under min safe", int64(-MaxSafeInt - 1), ``, true},
		{"int64 min", int64(math.MinInt64), ``, true},
		{"int32", int32(-5), `-5`, false},
		{"uint32", uint32(math.MaxUint32), `4294967295`, false},
		{"float64 integral", 1e10, `10000000000`, false},
		{"float64 negative zero", math.Copysign(0, -1), `0`, false},
		{"float64 fraction", 1.5, ``, true},
		{"float64 2^53", float64(1 << 53), ``, true},
		{"float64 NaN", math.NaN(), ``, true},
		{"float64 +Inf", math.Inf(1), ``, true},
		{"float64 -Inf", math.Inf(-1), ``, true},
		{"[]string", []string{"b", "a"}, `["b","a"]`, false},
		{"[]any", []any{1, "a", nil, []any{true}}, `[1,"a",null,[true]]`, false},
		{"[]any with float", []any{0.5}, ``, true},
		{"map[string]any", map[string]any{"b": 1, "a": map[string]any{"d": "x", "c": nil}}, `{"a":{"c":null,"d":"x"},"b":1}`, false},
		{"map[string]any with bad value", map[string]any{"a": 1.5}, ``, true},
		{"map[string]string", map[string]string{"z": "1", "y": "2"}, `{"y":"2","z":"1"}`, false},
		{"struct via encoding/json", sample{Name: "n", Count: 3, HTML: "<&>"}, `{"count":3,"html":"<&>","name":"n"}`, false},
		{"struct with out-of-range uint64", sample{Count: math.MaxUint64}, ``, true},
		{"uint64 via encoding/json", uint64(7), `7`, false},
		{"float32 via encoding/json", float32(0.25), ``, true},
		{"unsupported type", make(chan int), ``, true},
		// Invalid UTF-8 from Go code is refused rather than replaced: two
		// keys that differ only in bad bytes would otherwise both encode
		// as "\uFFFD", a duplicate key.
		{"string invalid UTF-8", "a\xff", ``, true},
		{"[]string invalid UTF-8", []string{"ok", "\xfe"}, ``, true},
		{"map key invalid UTF-8", map[string]any{"\xff": 1, "\xfe": 2}, ``, true},
		{"nested map key invalid UTF-8", map[string]any{"a": map[string]any{"\xff": 1}}, ``, true},
		{"map[string]string key invalid UTF-8", map[string]string{"\xff": "x"}, ``, true},
		{"map[string]string value invalid UTF-8", map[string]string{"k": "\xff"}, ``, true},
		{"valid non-ASCII", map[string]any{"日": "本"}, `{"日":"本"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := FromGo(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("FromGo(%#v) = %s, want error", tt.in, v)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromGo(%#v): %v", tt.in, err)
			}
			if got := v.String(); got != tt.want {
				t.Errorf("FromGo(%#v) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestMustFromGoPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("MustFromGo(1.5) did not panic")
		}
	}()
	MustFromGo(1.5)
}

// TestEncodingJSONInterop checks Value inside structs handled by
// encoding/json: it marshals canonically and unmarshals strictly.
func TestEncodingJSONInterop(t *testing.T) {
	type wrapper struct {
		V Value `json:"v"`
	}
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{"round trip", `{"v":{"b":1,"a":"日"}}`, `{"v":{"a":"日","b":1}}`, false},
		{"null", `{"v":null}`, `{"v":null}`, false},
		{"float refused", `{"v":{"a":1.5}}`, ``, true},
		{"duplicate key refused", `{"v":{"a":1,"a":2}}`, ``, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w wrapper
			err := json.Unmarshal([]byte(tt.in), &w)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Unmarshal(%s) = %s, want error", tt.in, w.V)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.in, err)
			}
			out, err := json.Marshal(w)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(out) != tt.want {
				t.Errorf("Marshal = %s, want %s", out, tt.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	var got struct {
		Membership string `json:"membership"`
		Level      int    `json:"level"`
	}
	if err := mustParse(t, `{"membership":"join","level":50,"other":[1]}`).Decode(&got); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.Membership != "join" || got.Level != 50 {
		t.Errorf("Decode = %+v, want membership join, level 50", got)
	}
}
