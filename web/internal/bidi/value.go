package bidi

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// RemoteValue is a script result as BiDi serialises it (WebDriver BiDi,
// "script.RemoteValue"): a type tag and, for most types, a value.
type RemoteValue struct {
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Decode turns the remote value into a plain Go value: nil (undefined,
// null), string, float64 (number; NaN, ±Infinity and -0 included), bool,
// string for bigint and date, []any for arrays and sets, map[string]any
// for objects and maps (string keys only). Other types (nodes, functions,
// promises, ...) are an error: a test should ask for what it can read.
func (v RemoteValue) Decode() (any, error) {
	switch v.Type {
	case "undefined", "null":
		return nil, nil
	case "string", "bigint", "date":
		var s string
		err := json.Unmarshal(v.Value, &s)
		return s, err
	case "boolean":
		var b bool
		err := json.Unmarshal(v.Value, &b)
		return b, err
	case "number":
		return decodeNumber(v.Value)
	case "array", "set":
		var items []RemoteValue
		if err := json.Unmarshal(v.Value, &items); err != nil {
			return nil, err
		}
		out := make([]any, len(items))
		for i, it := range items {
			d, err := it.Decode()
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = d
		}
		return out, nil
	case "object", "map":
		// A list of [key, value] pairs; a key is a string, or a
		// RemoteValue for a map's non-string keys.
		var pairs [][2]json.RawMessage
		if err := json.Unmarshal(v.Value, &pairs); err != nil {
			return nil, err
		}
		out := make(map[string]any, len(pairs))
		for _, p := range pairs {
			var k string
			if err := json.Unmarshal(p[0], &k); err != nil {
				return nil, fmt.Errorf("a %s key that is not a string: %s", v.Type, p[0])
			}
			var rv RemoteValue
			if err := json.Unmarshal(p[1], &rv); err != nil {
				return nil, err
			}
			d, err := rv.Decode()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = d
		}
		return out, nil
	}
	return nil, fmt.Errorf("bidi: cannot decode a remote %s", v.Type)
}

// decodeNumber reads a number, which the protocol sends as JSON except
// for the values JSON cannot hold, sent as strings.
func decodeNumber(raw json.RawMessage) (float64, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "-0":
			return math.Copysign(0, -1), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
		return 0, fmt.Errorf("bidi: number %q", s)
	}
	return strconv.ParseFloat(string(raw), 64)
}
