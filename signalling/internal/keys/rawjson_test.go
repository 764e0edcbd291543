package keys

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecorate(t *testing.T) {
	sig := sigMap{"@a:s": {"ed25519:K": "sig"}}
	tests := []struct {
		name     string
		raw      string
		extra    sigMap
		unsigned string
		want     string
	}{
		{"nothing to add", `{ "a" : 1 }`, nil, "", `{ "a" : 1 }`},
		{"unsigned only", `{ "a" : 1 }`, nil, `{}`, `{ "a" : 1 ,"unsigned":{}}`},
		{"unsigned into an empty object", `{ }`, nil, `{"x":1}`, `{ "unsigned":{"x":1}}`},
		{"merge into existing signatures", `{"signatures": {"@a:s": {"ed25519:D": "d"}}, "b": "\u00e9"}`, sig, "",
			`{"signatures": {"@a:s":{"ed25519:D":"d","ed25519:K":"sig"}}, "b": "\u00e9"}`},
		{"existing signature wins", `{"signatures": {"@a:s": {"ed25519:K": "mine"}}}`, sig, "",
			`{"signatures": {"@a:s":{"ed25519:K":"mine"}}}`},
		{"signatures added when absent", `{"a": [1, {"}": "{"}]}`, sig, `{}`,
			`{"a": [1, {"}": "{"}],"signatures":{"@a:s":{"ed25519:K":"sig"}},"unsigned":{}}`},
		{"client unsigned replaced", `{"unsigned": {"evil": true}, "a": 1, "signatures": {}}`, sig, `{}`,
			`{"a": 1,"signatures": {"@a:s":{"ed25519:K":"sig"}},"unsigned":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var uns []byte
			if tt.unsigned != "" {
				uns = []byte(tt.unsigned)
			}
			got, err := decorate([]byte(tt.raw), tt.extra, uns)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// FuzzDecorate checks that decorating any stored object yields valid
// JSON equal to the object with the server's members set.
func FuzzDecorate(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"signatures":{"@x:y":{"k":"v"}},"unsigned":1}`, ` { "s" : "\"}" } `, `{"signatures":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var in map[string]any
		if json.Unmarshal(raw, &in) != nil || in == nil {
			return
		}
		if s, ok := in["signatures"]; ok && s != nil {
			if _, isObj := s.(map[string]any); !isObj {
				return // stored keys passed validation: signatures is an object
			}
			var sm map[string]map[string]json.RawMessage
			if json.Unmarshal(mustJSON(t, s), &sm) != nil {
				return
			}
		}
		extra := sigMap{"@f:z": {"ed25519:F": "sig"}}
		got, err := decorate(raw, extra, []byte(`{"n":1}`))
		if err != nil {
			t.Fatalf("decorate(%q): %v", raw, err)
		}
		var out map[string]any
		if err := json.Unmarshal(got, &out); err != nil {
			t.Fatalf("decorate(%q) = %q: %v", raw, got, err)
		}
		want := map[string]any{}
		for k, v := range in {
			want[k] = v
		}
		sigs, _ := want["signatures"].(map[string]any)
		if sigs == nil {
			sigs = map[string]any{}
		}
		f, _ := sigs["@f:z"].(map[string]any)
		if f == nil {
			f = map[string]any{}
		}
		if _, ok := f["ed25519:F"]; !ok {
			f["ed25519:F"] = "sig"
		}
		sigs["@f:z"] = f
		want["signatures"] = sigs
		want["unsigned"] = map[string]any{"n": float64(1)}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("decorate(%q) = %s, want %v", raw, got, want)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRawObject(t *testing.T) {
	got := rawObject(map[string][]byte{"b": []byte(`{"x": 1}`), "a\"": []byte(`2`)})
	if want := `{"a\"":2,"b":{"x": 1}}`; !bytes.Equal(got, []byte(want)) {
		t.Fatalf("got %s, want %s", got, want)
	}
}
