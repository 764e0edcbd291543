package transport

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	full := Authorization{Origin: "origin.hs.example.com", Destination: "destination.hs.example.com", Key: "ed25519:key1", Sig: "ABCDEF"}
	tests := []struct {
		name    string
		header  string
		want    Authorization
		wantErr bool
	}{
		{"spec example", `X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF"`, full, false},
		{"unquoted, colon in value", `X-Matrix origin=origin.hs.example.com,destination=destination.hs.example.com,key=ed25519:key1,sig=ABCDEF`, full, false},
		{"case and order", `x-matrix SIG="ABCDEF",Key="ed25519:key1",Destination="destination.hs.example.com",ORIGIN="origin.hs.example.com"`, full, false},
		{"whitespace around commas", "X-Matrix   origin=\"origin.hs.example.com\" ,\tdestination=\"destination.hs.example.com\" , key=\"ed25519:key1\",\tsig=\"ABCDEF\"", full, false},
		{"escapes", `X-Matrix origin="origin.hs.\example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABC\"DEF"`,
			Authorization{Origin: "origin.hs.example.com", Destination: "destination.hs.example.com", Key: "ed25519:key1", Sig: `ABC"DEF`}, false},
		{"unknown parameter", `X-Matrix origin="a",foo="b,c",key="ed25519:k",sig="s"`, Authorization{Origin: "a", Key: "ed25519:k", Sig: "s"}, false},
		{"port in origin", `X-Matrix origin=hs1:8448,key=ed25519:k,sig=s`, Authorization{Origin: "hs1:8448", Key: "ed25519:k", Sig: "s"}, false},
		{"trailing comma", `X-Matrix origin=a,key=ed25519:k,sig=s,`, Authorization{Origin: "a", Key: "ed25519:k", Sig: "s"}, false},
		{"other scheme", `Bearer abc`, Authorization{}, true},
		{"no params", `X-Matrix `, Authorization{}, true},
		{"missing sig", `X-Matrix origin=a,key=ed25519:k`, Authorization{}, true},
		{"missing origin", `X-Matrix key=ed25519:k,sig=s`, Authorization{}, true},
		{"missing key", `X-Matrix origin=a,sig=s`, Authorization{}, true},
		{"unterminated quote", `X-Matrix origin="a,key=ed25519:k,sig=s`, Authorization{}, true},
		{"duplicate", `X-Matrix origin=a,origin=b,key=ed25519:k,sig=s`, Authorization{}, true},
		{"garbage between", `X-Matrix origin="a" x,key=ed25519:k,sig=s`, Authorization{}, true},
		{"no equals", `X-Matrix origin`, Authorization{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthorization(tc.header)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestAuthorizationString: the sender's form follows the compatibility
// advice and parses back.
func TestAuthorizationString(t *testing.T) {
	a := Authorization{Origin: "hs1", Destination: "hs2:8448", Key: "ed25519:a_b", Sig: "x/y+z"}
	s := a.String()
	if s != `X-Matrix origin="hs1",destination="hs2:8448",key="ed25519:a_b",sig="x/y+z"` {
		t.Errorf("String() = %s", s)
	}
	back, err := ParseAuthorization(s)
	if err != nil || back != a {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

// TestSignRequestMatchesVerifier: a header made by SignRequest verifies
// for a request built by hand, and the signature covers the parsed JSON,
// not its formatting.
func TestSignRequestMatchesVerifier(t *testing.T) {
	key := newKey(t)
	keys := &staticKeys{}
	keys.add("hs1", "ed25519:k", key)
	h, err := SignRequest("hs1", "hs2", "ed25519:k", key, "PUT", "/_matrix/federation/v1/send/1?x=%20", []byte(`{"b": 2, "a": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("PUT", "https://hs2/_matrix/federation/v1/send/1?x=%20", nil)
	r.Header.Set("Authorization", h)
	origin, err := NewVerifier("hs2", keys).Authenticate(r, []byte(`{"a":1,"b":2}`))
	if err != nil || origin != "hs1" {
		t.Fatalf("origin %q, err %v", origin, err)
	}
	if _, err := NewVerifier("hs2", keys).Authenticate(r, []byte(`{"a":1`)); err == nil || !strings.Contains(err.Error(), "M_NOT_JSON") {
		t.Errorf("bad body: %v", err)
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add(`X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF"`)
	f.Add(`X-Matrix origin=a,key=ed25519:k,sig=s`)
	f.Add("X-Matrix  origin=\"a\\\"b\" ,\tkey=k,sig=s,")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseAuthorization(h)
		if err != nil {
			return
		}
		// Whatever parsed must survive the sender's formatting.
		back, err := ParseAuthorization(a.String())
		if err != nil || back != a {
			t.Fatalf("%q parsed to %+v, which formats to %q and parses to %+v, %v", h, a, a.String(), back, err)
		}
	})
}
