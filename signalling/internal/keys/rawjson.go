package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// Signed key objects are served as the bytes clients uploaded. Going
// through encoding/json would reorder members, re-escape strings and drop
// what our structs do not name; clients would still verify the canonical
// form, but nothing we did not add should ever change. The helpers here
// write JSON around raw values and splice the two members the server owns
// ("signatures" extended with stored signatures, and "unsigned") into a
// stored object.

// rawObject writes a JSON object whose values are already JSON, with its
// keys in sorted order.
func rawObject(m map[string][]byte) []byte {
	keys := sortedKeys(m)
	n := 2
	for _, k := range keys {
		n += len(k) + len(m[k]) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = cjson.AppendString(b, k)
		b = append(b, ':')
		b = append(b, m[k]...)
	}
	return append(b, '}')
}

// member is one top-level member of a JSON object: the key, where the
// member starts (its key's opening quote) and where its value starts and
// ends.
type member struct {
	key                string
	start, vStart, end int
}

// members scans the top-level members of the JSON object raw, which must
// be valid JSON. It returns them with the offset of the closing brace.
func members(raw []byte) ([]member, int, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, 0, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, 0, errors.New("not a JSON object")
	}
	var out []member
	for dec.More() {
		prev := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return nil, 0, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, 0, errors.New("object key is not a string")
		}
		start := skipTo(raw, prev, '"')
		keyEnd := int(dec.InputOffset())
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, 0, err
		}
		end := int(dec.InputOffset())
		vStart := skipSpace(raw, skipTo(raw, keyEnd, ':')+1)
		out = append(out, member{key: key, start: start, vStart: vStart, end: end})
	}
	last := int(dec.InputOffset())
	closing := skipTo(raw, last, '}')
	if closing >= len(raw) {
		return nil, 0, errors.New("unterminated object")
	}
	return out, closing, nil
}

func skipTo(b []byte, i int, c byte) int {
	for i < len(b) && b[i] != c {
		i++
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// sigMap is signatures as stored: signer user ID -> key ID -> signature.
type sigMap map[string]map[string]string

func (s sigMap) add(signer, keyID, sig string) {
	if s[signer] == nil {
		s[signer] = map[string]string{}
	}
	s[signer][keyID] = sig
}

// decorate returns the stored object raw with extra signatures merged into
// its "signatures" member and, if unsigned is not nil, an "unsigned"
// member set to it. Every other byte of raw is kept; with nothing to add
// it returns raw itself.
func decorate(raw []byte, extra sigMap, unsigned []byte) ([]byte, error) {
	if len(extra) == 0 && unsigned == nil {
		return raw, nil
	}
	ms, closing, err := members(raw)
	if err != nil {
		return nil, fmt.Errorf("keys: stored key is not a JSON object: %w", err)
	}
	sigIdx, unsIdx := -1, -1
	for i, m := range ms {
		switch m.key {
		case "signatures":
			sigIdx = i
		case "unsigned":
			unsIdx = i
		}
	}
	var sigs []byte
	if len(extra) > 0 {
		var orig json.RawMessage
		if sigIdx >= 0 {
			orig = raw[ms[sigIdx].vStart:ms[sigIdx].end]
		}
		if sigs, err = mergeSignatures(orig, extra); err != nil {
			return nil, err
		}
	}
	if unsIdx >= 0 {
		// A client-supplied "unsigned" is replaced: rebuild from the
		// members, each still byte for byte.
		return rebuild(raw, ms, sigIdx, sigs, unsIdx, unsigned), nil
	}
	out := make([]byte, 0, len(raw)+len(sigs)+len(unsigned)+32)
	rest := 0
	if sigs != nil {
		if sigIdx >= 0 {
			out = append(out, raw[:ms[sigIdx].vStart]...)
			out = append(out, sigs...)
			rest = ms[sigIdx].end
		} else {
			out = append(out, raw[:closing]...)
			if len(ms) > 0 {
				out = append(out, ',')
			}
			out = append(out, `"signatures":`...)
			out = append(out, sigs...)
			rest = closing
		}
	}
	out = append(out, raw[rest:closing]...)
	if unsigned != nil {
		if len(ms) > 0 || sigs != nil {
			out = append(out, ',')
		}
		out = append(out, `"unsigned":`...)
		out = append(out, unsigned...)
	}
	return append(out, raw[closing:]...), nil
}

// rebuild writes the object from its members, replacing the signatures
// value (if sigs is set) and the unsigned member.
func rebuild(raw []byte, ms []member, sigIdx int, sigs []byte, unsIdx int, unsigned []byte) []byte {
	out := []byte{'{'}
	n := 0
	sep := func() {
		if n > 0 {
			out = append(out, ',')
		}
		n++
	}
	for i, m := range ms {
		switch {
		case i == unsIdx:
			continue
		case i == sigIdx && sigs != nil:
			sep()
			out = append(out, raw[m.start:m.vStart]...)
			out = append(out, sigs...)
		default:
			sep()
			out = append(out, raw[m.start:m.end]...)
		}
	}
	if sigIdx < 0 && sigs != nil {
		sep()
		out = append(out, `"signatures":`...)
		out = append(out, sigs...)
	}
	if unsigned != nil {
		sep()
		out = append(out, `"unsigned":`...)
		out = append(out, unsigned...)
	}
	return append(out, '}')
}

// mergeSignatures adds extra to the signatures object orig (which may be
// empty) and writes the result with sorted keys; signatures already in
// orig win, being the uploader's own.
func mergeSignatures(orig json.RawMessage, extra sigMap) ([]byte, error) {
	merged := map[string]map[string]json.RawMessage{}
	if len(orig) > 0 && !bytes.Equal(bytes.TrimSpace(orig), []byte("null")) {
		if err := json.Unmarshal(orig, &merged); err != nil {
			return nil, fmt.Errorf("keys: stored signatures: %w", err)
		}
	}
	for signer, byKey := range extra {
		if merged[signer] == nil {
			merged[signer] = map[string]json.RawMessage{}
		}
		for keyID, sig := range byKey {
			if _, ok := merged[signer][keyID]; !ok {
				merged[signer][keyID] = cjson.AppendString(nil, sig)
			}
		}
	}
	outer := make(map[string][]byte, len(merged))
	for signer, byKey := range merged {
		inner := make(map[string][]byte, len(byKey))
		for keyID, sig := range byKey {
			inner[keyID] = sig
		}
		outer[signer] = rawObject(inner)
	}
	return rawObject(outer), nil
}

// stripped returns the canonical form of obj without "signatures" and
// "unsigned": what signatures cover, and what must match when a client
// re-uploads a key with new signatures.
func stripped(obj []byte) ([]byte, error) {
	v, err := cjson.Parse(obj)
	if err != nil {
		return nil, err
	}
	if v.Kind() != cjson.Object {
		return nil, errors.New("not a JSON object")
	}
	return cjson.Marshal(v.Without("signatures", "unsigned")), nil
}

// sortedStrings sorts and returns s (nil becomes an empty slice, which
// encodes as []).
func sortedStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	sort.Strings(s)
	return s
}
