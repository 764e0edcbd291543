package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/internal/server"
)

// rawPair is hs1 (a Client) and hs2 serving non-JSON answers behind a
// Verifier, plus cdn.example, a plain HTTPS server a Location can point
// to.
type rawPair struct {
	hs1 *Client
	// cdnAuth is the Authorization header cdn.example last received.
	cdnAuth chan string
}

func newRawPair(t *testing.T) *rawPair {
	t.Helper()
	p := &rawPair{cdnAuth: make(chan string, 8)}
	keys := &staticKeys{}
	hsCert, cdnCert := newCert(t, "hs2"), newCert(t, "cdn.example")

	mux := http.NewServeMux()
	v := NewVerifier("hs2", keys)
	mux.Handle("GET /_matrix/federation/v1/media/download/{id}", fedhttp.Wrap(v, 0,
		func(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
			if r.PathValue("id") == "gone" {
				server.WriteJSON(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "gone"})
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("X-Origin", req.Origin)
			io.WriteString(w, "raw bytes of "+r.PathValue("id")+"?"+r.URL.RawQuery)
		}))
	hs := startTLS(t, hsCert, mux)

	cdnMux := http.NewServeMux()
	cdnMux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		p.cdnAuth <- r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "image/png")
		io.WriteString(w, "cdn bytes")
	})
	cdnMux.HandleFunc("GET /hop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://cdn.example/file", http.StatusFound)
	})
	cdnMux.HandleFunc("GET /plain", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://cdn.example/file", http.StatusFound)
	})
	cdnMux.HandleFunc("GET /loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://cdn.example/loop", http.StatusFound)
	})
	cdnMux.HandleFunc("GET /missing", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
	cdn := startTLS(t, cdnCert, cdnMux)
	cdnAddr := cdn.Listener.Addr().String()

	key := newKey(t)
	keys.add("hs1", "ed25519:hs1key", key)
	var d net.Dialer
	p.hs1 = newClient(t, Config{
		ServerName: "hs1", KeyID: "ed25519:hs1key", Key: key,
		Resolve: map[string]string{"hs2": hs.Listener.Addr().String()},
		RootCAs: poolOf(hsCert, cdnCert),
		Timeout: 5 * time.Second,
		// cdn.example:443 is the loopback CDN; nothing else is dialled
		// outside the resolve table.
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == "cdn.example:443" {
				addr = cdnAddr
			}
			return d.DialContext(ctx, network, addr)
		},
	})
	return p
}

func readAllClose(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDoRaw(t *testing.T) {
	p := newRawPair(t)
	ctx := context.Background()

	t.Run("signed, body read after return", func(t *testing.T) {
		res, err := p.hs1.DoRaw(ctx, "hs2", "GET", "/_matrix/federation/v1/media/download/abc?timeout_ms=5", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAllClose(t, res); got != "raw bytes of abc?timeout_ms=5" {
			t.Errorf("body %q", got)
		}
		if res.Header.Get("X-Origin") != "hs1" || res.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("headers %v", res.Header)
		}
	})
	t.Run("remote error", func(t *testing.T) {
		_, err := p.hs1.DoRaw(ctx, "hs2", "GET", "/_matrix/federation/v1/media/download/gone", nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != http.StatusNotFound || re.ErrCode != "M_NOT_FOUND" {
			t.Fatalf("err = %#v", err)
		}
	})
	t.Run("unsigned request refused by the verifier", func(t *testing.T) {
		// The same path without DoRaw's signature: proof that DoRaw's
		// success above came from a valid X-Matrix header.
		err := p.hs1.GetUnsigned(ctx, "hs2", "/_matrix/federation/v1/media/download/abc", nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != http.StatusUnauthorized {
			t.Fatalf("err = %#v", err)
		}
	})
	t.Run("relative path", func(t *testing.T) {
		if _, err := p.hs1.DoRaw(ctx, "hs2", "GET", "_matrix/x", nil); err == nil {
			t.Fatal("accepted a path without a leading /")
		}
	})
}

func TestGetURL(t *testing.T) {
	p := newRawPair(t)
	ctx := context.Background()
	for _, path := range []string{"/file", "/hop"} {
		t.Run("ok "+path, func(t *testing.T) {
			res, err := p.hs1.GetURL(ctx, "https://cdn.example"+path)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAllClose(t, res); got != "cdn bytes" || res.Header.Get("Content-Type") != "image/png" {
				t.Errorf("got %q %v", got, res.Header)
			}
			if auth := <-p.cdnAuth; auth != "" {
				t.Errorf("sent Authorization %q to a Location", auth)
			}
		})
	}
	tests := []struct {
		name, url string
		status    int // of the *RemoteError; 0: any other error
	}{
		{"not https", "http://cdn.example/file", 0},
		{"relative", "/file", 0},
		{"redirect to http", "https://cdn.example/plain", 0},
		{"redirect loop", "https://cdn.example/loop", 0},
		{"404", "https://cdn.example/missing", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.hs1.GetURL(ctx, tc.url)
			if err == nil {
				res.Body.Close()
				t.Fatal("no error")
			}
			var re *RemoteError
			if isRemote := errors.As(err, &re); isRemote != (tc.status != 0) || (isRemote && re.Status != tc.status) {
				t.Fatalf("err = %v, want status %d", err, tc.status)
			}
			if tc.status == 0 && !strings.Contains(err.Error(), "transport") {
				t.Errorf("error %q does not name its origin", err)
			}
		})
	}
}
