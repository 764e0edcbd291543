package signing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// The key of appendices, "Cryptographic Test Vectors", "Signing Key".
const (
	specSeed   = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	specEntity = "domain"
	specKeyID  = "ed25519:1"
)

func specKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	seed, err := DecodeBase64(specSeed)
	if err != nil {
		t.Fatalf("decode spec seed: %v", err)
	}
	if len(seed) != ed25519.SeedSize {
		t.Fatalf("spec seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func otherKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

func mustParse(t testing.TB, s string) cjson.Value {
	t.Helper()
	v, err := cjson.Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return v
}

// TestSpecJSONSigningVectors signs the objects of appendices,
// "Cryptographic Test Vectors", "JSON Signing" (testdata/json-signing) and
// compares with the spec's output byte for byte after canonicalisation.
func TestSpecJSONSigningVectors(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	ins, err := filepath.Glob(filepath.Join("testdata", "json-signing", "*.in.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 2 {
		t.Fatalf("found %d vectors, want 2", len(ins))
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			signedFile, err := os.ReadFile(strings.TrimSuffix(in, ".in.json") + ".signed.json")
			if err != nil {
				t.Fatal(err)
			}
			want, err := cjson.Canonicalize(signedFile)
			if err != nil {
				t.Fatalf("canonicalize expected output: %v", err)
			}
			got, err := SignJSON(input, specEntity, specKeyID, priv)
			if err != nil {
				t.Fatalf("SignJSON: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("SignJSON:\n got %s\nwant %s", got, want)
			}
			if err := VerifyJSON(signedFile, specEntity, specKeyID, pub); err != nil {
				t.Errorf("VerifyJSON(spec output): %v", err)
			}
		})
	}
}

// TestVerify covers round trips and the failures of appendices, "Checking
// for a Signature".
func TestVerify(t *testing.T) {
	priv := specKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	other := otherKey(t)
	base := mustParse(t, `{"a":1,"b":{"c":"d"},"unsigned":{"age":1}}`)
	signed, err := Sign(base, specEntity, specKeyID, priv)
	if err != nil {
		t.Fatal(err)
	}
	sig, ok := Signature(signed, specEntity, specKeyID)
	if !ok {
		t.Fatalf("Sign did not add signatures.%s.%s: %s", specEntity, specKeyID, signed)
	}
	withSig := func(v cjson.Value) cjson.Value {
		return v.With("signatures", cjson.Obj(cjson.M(specEntity, cjson.Obj(cjson.M(specKeyID, cjson.Str(sig))))))
	}
	setSig := func(s cjson.Value) cjson.Value {
		return base.With("signatures", cjson.Obj(cjson.M(specEntity, cjson.Obj(cjson.M(specKeyID, s)))))
	}
	tests := []struct {
		name    string
		obj     cjson.Value
		pub     ed25519.PublicKey
		wantErr error // nil: must verify; errAny: any error
	}{
		{"round trip", signed, pub, nil},
		{"unsigned changed", signed.With("unsigned", mustParse(t, `{"age":99999,"x":[1]}`)), pub, nil},
		{"unsigned removed", signed.Without("unsigned"), pub, nil},
		{"other entity's signature added", mustAddSig(t, signed, "other.example", "ed25519:x", other), pub, nil},
		{"another key of ours added", mustAddSig(t, signed, specEntity, "ed25519:2", other), pub, nil},
		{"padded base64 signature", setSig(cjson.Str(sig + "==")), pub, nil},
		{"wrong key", signed, other.Public().(ed25519.PublicKey), ErrBadSignature},
		{"tampered value", withSig(base.With("a", cjson.Integer(2))), pub, ErrBadSignature},
		{"tampered nested value", withSig(base.With("b", mustParse(t, `{"c":"e"}`))), pub, ErrBadSignature},
		{"key added", withSig(base.With("z", cjson.NullValue())), pub, ErrBadSignature},
		{"key removed", withSig(base.Without("b")), pub, ErrBadSignature},
		{"signature of other data", setSig(cjson.Str(Base64.EncodeToString(ed25519.Sign(priv, []byte("{}"))))), pub, ErrBadSignature},
		{"malformed base64", setSig(cjson.Str("not base64!")), pub, ErrBadSignature},
		{"URL-safe base64", setSig(cjson.Str(strings.NewReplacer("+", "-", "/", "_").Replace(sig + "-_"))), pub, ErrBadSignature},
		{"short signature", setSig(cjson.Str(sig[:40])), pub, ErrBadSignature},
		{"long signature", setSig(cjson.Str(sig + "AAAA")), pub, ErrBadSignature},
		{"no signatures", base, pub, ErrNoSignature},
		{"no entry for entity", mustAddSig(t, base, "other.example", specKeyID, priv), pub, ErrNoSignature},
		{"no entry for key ID", mustAddSig(t, base, specEntity, "ed25519:2", priv), pub, ErrNoSignature},
		{"signature not a string", setSig(cjson.Integer(1)), pub, ErrNoSignature},
		{"entity entry not an object", base.With("signatures", mustParse(t, `{"domain":"x"}`)), pub, ErrNoSignature},
		{"bad public key length", signed, pub[:16], errAny},
		{"not an object", cjson.Arr(), pub, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.obj, specEntity, specKeyID, tt.pub)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Errorf("Verify: %v, want success", err)
			case tt.wantErr == errAny && err == nil:
				t.Errorf("Verify succeeded, want an error")
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Errorf("Verify error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

func mustAddSig(t testing.TB, obj cjson.Value, entity, keyID string, priv ed25519.PrivateKey) cjson.Value {
	t.Helper()
	v, err := Sign(obj, entity, keyID, priv)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return v
}

// TestSignKeepsSignaturesAndUnsigned checks Sign leaves everything else
// in place (appendices, "Signing Details": the signature is added to the
// original object along with "unsigned").
func TestSignKeepsSignaturesAndUnsigned(t *testing.T) {
	priv := specKey(t)
	tests := []struct {
		name string
		in   string
		keep []string // paths, dot separated, that must be unchanged
	}{
		{"unsigned kept", `{"a":1,"unsigned":{"age_ts":1}}`, []string{"unsigned.age_ts", "a"}},
		{"other entity kept", `{"signatures":{"other":{"ed25519:k":"sig"}}}`, []string{"signatures.other.ed25519:k"}},
		{"other key of same entity kept", `{"signatures":{"domain":{"ed25519:0":"old"}}}`, []string{"signatures.domain.ed25519:0"}},
		{"junk signatures replaced", `{"signatures":"junk","a":1}`, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mustParse(t, tt.in)
			out, err := Sign(in, specEntity, specKeyID, priv)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			for _, p := range tt.keep {
				keys := splitPath(p)
				want, _ := in.Path(keys...)
				got, ok := out.Path(keys...)
				if !ok || !got.Equal(want) {
					t.Errorf("%s = %s, want %s", p, got, want)
				}
			}
			if err := Verify(out, specEntity, specKeyID, priv.Public().(ed25519.PublicKey)); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// splitPath splits "signatures.domain.ed25519:1" into its three keys; key
// IDs contain no dots in these tests.
func splitPath(p string) []string { return strings.Split(p, ".") }

// TestSignReplacesOwnSignature checks that signing twice with the same key
// ID leaves one signature, not a stale one.
func TestSignReplacesOwnSignature(t *testing.T) {
	priv := specKey(t)
	obj := mustParse(t, `{"a":1,"signatures":{"domain":{"ed25519:1":"stale"}}}`)
	out, err := Sign(obj, specEntity, specKeyID, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(out, specEntity, specKeyID, priv.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("Verify after re-signing: %v", err)
	}
	if n := mustPath(t, out, "signatures", specEntity).Len(); n != 1 {
		t.Errorf("%d signatures for %s, want 1", n, specEntity)
	}
}

func mustPath(t testing.TB, v cjson.Value, keys ...string) cjson.Value {
	t.Helper()
	p, ok := v.Path(keys...)
	if !ok {
		t.Fatalf("no %v in %s", keys, v)
	}
	return p
}

func TestSignErrors(t *testing.T) {
	priv := specKey(t)
	tests := []struct {
		name string
		f    func() error
	}{
		{"Sign array", func() error { _, err := Sign(cjson.Arr(), specEntity, specKeyID, priv); return err }},
		{"Sign string", func() error { _, err := Sign(cjson.Str("x"), specEntity, specKeyID, priv); return err }},
		{"SigningBytes null", func() error { _, err := SigningBytes(cjson.NullValue()); return err }},
		{"SignJSON invalid JSON", func() error { _, err := SignJSON([]byte(`{"a":1.5}`), specEntity, specKeyID, priv); return err }},
		{"SignJSON duplicate key", func() error { _, err := SignJSON([]byte(`{"a":1,"a":2}`), specEntity, specKeyID, priv); return err }},
		{"VerifyJSON invalid JSON", func() error {
			return VerifyJSON([]byte(`{`), specEntity, specKeyID, priv.Public().(ed25519.PublicKey))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f(); err == nil {
				t.Errorf("got nil error, want one")
			}
		})
	}
}

func TestSigningBytes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"strips signatures and unsigned", `{"b":1,"signatures":{"x":{}},"unsigned":{"a":1},"a":2}`, `{"a":2,"b":1}`},
		{"nested keys of those names kept", `{"c":{"signatures":1,"unsigned":2}}`, `{"c":{"signatures":1,"unsigned":2}}`},
		{"canonical encoding", "{ \"é\" : \"\\u65E5\" , \"a\" : -0 }", `{"a":0,"é":"日"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SigningBytes(mustParse(t, tt.in))
			if err != nil {
				t.Fatalf("SigningBytes: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("SigningBytes = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestKeyIDs(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		entity string
		want   []string
	}{
		{"no signatures", `{}`, "a", nil},
		{"no entry", `{"signatures":{"b":{"ed25519:1":"x"}}}`, "a", nil},
		{"entry not an object", `{"signatures":{"a":"x"}}`, "a", nil},
		{"one", `{"signatures":{"a":{"ed25519:1":"x"}}}`, "a", []string{"ed25519:1"}},
		{"unknown algorithms dropped", `{"signatures":{"a":{"curve25519:1":"x","ed25519:z":"y","ed25519":"z","ed448:1":"w"}}}`, "a", []string{"ed25519:z"}},
		{"sorted", `{"signatures":{"a":{"ed25519:b":"x","ed25519:a":"y"}}}`, "a", []string{"ed25519:a", "ed25519:b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := KeyIDs(mustParse(t, tt.in), tt.entity)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") || len(got) != len(tt.want) {
				t.Errorf("KeyIDs = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDecodeBase64 uses the examples of appendices, "Unpadded Base64", in
// both forms: implementations SHOULD accept input with or without padding.
func TestDecodeBase64(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "", false},
		{"Zg", "f", false},
		{"Zg==", "f", false},
		{"Zm8", "fo", false},
		{"Zm8=", "fo", false},
		{"Zm9v", "foo", false},
		{"Zm9vYg", "foob", false},
		{"Zm9vYg==", "foob", false},
		{"Zm9vYmE", "fooba", false},
		{"Zm9vYmE=", "fooba", false},
		{"Zm9vYmFy", "foobar", false},
		{"+/+/", "\xfb\xff\xbf", false},
		{"-_-_", "", true}, // URL-safe alphabet is not standard base64
		{"Z", "", true},
		{"Zm9v!", "", true},
		{"Zm=9v", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := DecodeBase64(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Errorf("DecodeBase64(%q) = %q, want error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeBase64(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("DecodeBase64(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if enc := Base64.EncodeToString(got); enc != strings.TrimRight(tt.in, "=") {
				t.Errorf("Base64.EncodeToString(%q) = %q, want unpadded %q", got, enc, strings.TrimRight(tt.in, "="))
			}
		})
	}
}

func TestURLBase64(t *testing.T) {
	if got := URLBase64.EncodeToString([]byte{0xfb, 0xff, 0xbf}); got != "-_-_" {
		t.Errorf("URLBase64 = %q, want -_-_", got)
	}
	if got := URLBase64.EncodeToString([]byte("f")); got != "Zg" {
		t.Errorf("URLBase64 = %q, want Zg (unpadded)", got)
	}
}
