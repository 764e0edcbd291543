package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/internal/server"
)

// fedPair is hs1 (a Client) and hs2 (a TLS server whose federation
// endpoints are behind a Verifier), both with their own key.
type fedPair struct {
	hs1     *Client
	srv     string // hs2's address
	keys    *staticKeys
	pool    tls.Certificate
	release chan struct{} // closing it frees the hanging handler
}

func newFedPair(t *testing.T) *fedPair {
	t.Helper()
	p := &fedPair{keys: &staticKeys{}, release: make(chan struct{})}
	cert := newCert(t, "hs2")
	p.pool = cert
	mux := http.NewServeMux()
	v := NewVerifier("hs2", p.keys)
	echo := func(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
		server.WriteJSON(w, http.StatusOK, map[string]any{
			"origin": req.Origin, "body": string(req.Body), "uri": r.URL.RequestURI(), "host": r.Host,
		})
	}
	mux.Handle("PUT /_matrix/federation/v1/send/{txn}", fedhttp.Wrap(v, 0, echo))
	mux.Handle("GET /_matrix/federation/v1/query/{kind}", fedhttp.Wrap(v, 0, echo))
	mux.Handle("GET /_matrix/federation/v1/missing", fedhttp.Wrap(v, 0, func(w http.ResponseWriter, _ *http.Request, _ *fedhttp.Request) {
		server.WriteJSON(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "no such thing"})
	}))
	mux.HandleFunc("GET /_matrix/federation/v1/version", func(w http.ResponseWriter, r *http.Request) {
		server.WriteJSON(w, http.StatusOK, map[string]any{"auth": r.Header.Get("Authorization")})
	})
	mux.HandleFunc("GET /_matrix/federation/v1/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-p.release:
		case <-r.Context().Done():
		}
	})
	s := startTLS(t, cert, mux)
	t.Cleanup(func() { close(p.release) }) // runs before s.Close
	p.srv = s.Listener.Addr().String()
	key := newKey(t)
	p.keys.add("hs1", "ed25519:hs1key", key)
	p.hs1 = newClient(t, Config{
		ServerName: "hs1", KeyID: "ed25519:hs1key", Key: key,
		Resolve: map[string]string{"hs2": p.srv},
		RootCAs: poolOf(cert),
		Timeout: 5 * time.Second,
	})
	return p
}

func TestSignedRequestVerifies(t *testing.T) {
	p := newFedPair(t)
	ctx := context.Background()
	type echo struct{ Origin, Body, URI, Host string }

	tests := []struct {
		name     string
		method   string
		path     string
		body     any
		wantBody string
	}{
		{"struct body", "PUT", "/_matrix/federation/v1/send/t1", map[string]any{"pdus": []any{}, "origin": "hs1"}, `{"origin":"hs1","pdus":[]}`},
		{"raw body passes unchanged", "PUT", "/_matrix/federation/v1/send/t2", json.RawMessage(`{ "b":1,"a" : [true] }`), `{ "b":1,"a" : [true] }`},
		{"bytes body", "PUT", "/_matrix/federation/v1/send/t3", []byte(`{}`), `{}`},
		{"no body, query and escapes", "GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Ahs2&field=displayname", nil, ""},
		{"escaped path segment", "PUT", "/_matrix/federation/v1/send/a%2Fb%21", []byte(`{}`), `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got echo
			if err := p.hs1.Do(ctx, "hs2", tc.method, tc.path, tc.body, &got); err != nil {
				t.Fatal(err)
			}
			if got.Origin != "hs1" || got.Body != tc.wantBody || got.URI != tc.path || got.Host != "hs2" {
				t.Errorf("got %+v, want origin hs1, body %q, uri %q, host hs2", got, tc.wantBody, tc.path)
			}
		})
	}

	t.Run("raw answer", func(t *testing.T) {
		var raw json.RawMessage
		if err := p.hs1.Do(ctx, "hs2", "GET", "/_matrix/federation/v1/query/x", nil, &raw); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(raw, []byte(`"origin":"hs1"`)) {
			t.Errorf("raw answer %s", raw)
		}
		if err := p.hs1.Do(ctx, "hs2", "GET", "/_matrix/federation/v1/query/x", nil, nil); err != nil {
			t.Errorf("discarding the answer: %v", err)
		}
	})

	t.Run("remote error", func(t *testing.T) {
		err := p.hs1.Do(ctx, "hs2", "GET", "/_matrix/federation/v1/missing", nil, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != 404 || re.ErrCode != "M_NOT_FOUND" || re.Message != "no such thing" {
			t.Fatalf("err = %#v", err)
		}
		if !strings.Contains(re.Error(), "404") || !strings.Contains(re.Error(), "M_NOT_FOUND") {
			t.Errorf("Error() = %q", re.Error())
		}
	})

	t.Run("unsigned", func(t *testing.T) {
		var got struct{ Auth string }
		if err := p.hs1.GetUnsigned(ctx, "hs2", "/_matrix/federation/v1/version", &got); err != nil {
			t.Fatal(err)
		}
		if got.Auth != "" {
			t.Errorf("GetUnsigned sent Authorization %q", got.Auth)
		}
	})
}

// rawRequest sends a request to hs2 with the given Authorization headers.
func (p *fedPair) rawRequest(t *testing.T, method, path, body string, auths ...string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: poolOf(p.pool), ServerName: "hs2"}}}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://"+p.srv+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "hs2"
	for _, a := range auths {
		req.Header.Add("Authorization", a)
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAuthenticateRejects(t *testing.T) {
	p := newFedPair(t)
	hs1Key := newKey(t)
	p.keys.add("hs1", "ed25519:k", hs1Key)
	other := newKey(t)
	const path = "/_matrix/federation/v1/send/x"
	const body = `{"pdus":[]}`
	sign := func(origin, dest, keyID string, key []byte, method, uri, content string) string {
		t.Helper()
		var c []byte
		if content != "" {
			c = []byte(content)
		}
		h, err := SignRequest(origin, dest, keyID, key, method, uri, c)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	good := sign("hs1", "hs2", "ed25519:k", hs1Key, "PUT", path, body)
	noDest := Authorization{Origin: "hs1", Key: "ed25519:k"}
	{
		// A header without destination, signed (as always) over hs2.
		a, _ := ParseAuthorization(good)
		noDest.Sig = a.Sig
	}

	tests := []struct {
		name    string
		auths   []string
		body    string
		wantErr string // "" means accepted
	}{
		{"valid", []string{good}, body, ""},
		{"valid without destination", []string{noDest.String()}, body, ""},
		{"valid after an invalid one", []string{sign("hs1", "hs2", "ed25519:k", other, "PUT", path, body), good}, body, ""},
		{"missing header", nil, body, "Missing Authorization"},
		{"not X-Matrix", []string{"Bearer abc"}, body, "Bad X-Matrix"},
		{"wrong destination", []string{sign("hs1", "hs3", "ed25519:k", hs1Key, "PUT", path, body)}, body, "not this server"},
		{"unknown key", []string{sign("hs1", "hs2", "ed25519:nope", hs1Key, "PUT", path, body)}, body, "unknown or expired key"},
		{"unknown origin", []string{sign("hs9", "hs2", "ed25519:k", hs1Key, "PUT", path, body)}, body, "unknown or expired key"},
		{"bad signature", []string{sign("hs1", "hs2", "ed25519:k", other, "PUT", path, body)}, body, "Invalid signature"},
		{"other body", []string{good}, `{"pdus":[1]}`, "Invalid signature"},
		{"other uri", []string{sign("hs1", "hs2", "ed25519:k", hs1Key, "PUT", path+"?a=1", body)}, body, "Invalid signature"},
		{"other method", []string{sign("hs1", "hs2", "ed25519:k", hs1Key, "POST", path, body)}, body, "Invalid signature"},
		{"signed without content", []string{sign("hs1", "hs2", "ed25519:k", hs1Key, "PUT", path, "")}, body, "Invalid signature"},
		{"origin spoofed", []string{strings.Replace(good, `origin="hs1"`, `origin="hs2"`, 1)}, body, "unknown or expired key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, got := p.rawRequest(t, "PUT", path, tc.body, tc.auths...)
			if tc.wantErr == "" {
				if status != 200 || !strings.Contains(got, `"origin":"hs1"`) {
					t.Fatalf("status %d, body %s", status, got)
				}
				return
			}
			var e struct {
				ErrCode string `json:"errcode"`
				Error   string `json:"error"`
			}
			if err := json.Unmarshal([]byte(got), &e); err != nil {
				t.Fatalf("body %q: %v", got, err)
			}
			if status != http.StatusUnauthorized || e.ErrCode != "M_UNAUTHORIZED" || !strings.Contains(e.Error, tc.wantErr) {
				t.Fatalf("status %d, body %s; want 401 M_UNAUTHORIZED containing %q", status, got, tc.wantErr)
			}
		})
	}
}

// TestSlowDestination: a destination that never answers neither blocks
// requests to others nor outlives the timeout.
func TestSlowDestination(t *testing.T) {
	p := newFedPair(t)
	fastCert := newCert(t, "fast")
	fast := startTLS(t, fastCert, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		server.WriteJSON(w, http.StatusOK, map[string]any{})
	}))
	c := newClient(t, Config{
		ServerName: "hs1",
		Resolve:    map[string]string{"hs2": p.srv, "fast": fast.Listener.Addr().String()},
		RootCAs:    poolOf(p.pool, fastCert),
		Timeout:    3 * time.Second,
	})
	slowDone := make(chan error, 4)
	for range 4 {
		go func() {
			slowDone <- c.Do(context.Background(), "hs2", "GET", "/_matrix/federation/v1/hang", nil, nil)
		}()
	}
	for range 20 {
		if err := c.GetUnsigned(context.Background(), "fast", "/x", nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-slowDone:
		t.Fatalf("slow request ended before its timeout: %v", err)
	default:
	}
	deadline := time.After(10 * time.Second)
	for range 4 {
		select {
		case err := <-slowDone:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("slow request: %v, want a deadline error", err)
			}
		case <-deadline:
			t.Fatal("slow request outlived its timeout")
		}
	}
}

// TestBadRequestBody: a body that is not JSON cannot be signed.
func TestBadRequestBody(t *testing.T) {
	p := newFedPair(t)
	err := p.hs1.Do(context.Background(), "hs2", "PUT", "/_matrix/federation/v1/send/x", []byte("{not json"), nil)
	if err == nil || !strings.Contains(err.Error(), "request body") {
		t.Fatalf("err = %v", err)
	}
}

// TestInsecureWarns: insecure mode is logged at Warn when the client is
// made.
func TestInsecureWarns(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		newClient(t, Config{ServerName: "hs1", Insecure: insecure, Logger: log})
		warned := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), "NOT checked")
		if warned != insecure {
			t.Errorf("insecure %v: log %q", insecure, buf.String())
		}
	}
}
