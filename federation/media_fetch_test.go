package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/internal/tlscert"
)

// usKey is the one key the media origins accept requests from: ours.
type usKey struct{}

func (usKey) VerifyKey(_ context.Context, server, keyID string, _ int64) (ed25519.PublicKey, error) {
	if server != usName || keyID != testKeyID {
		return nil, fmt.Errorf("no key %s of %s", keyID, server)
	}
	return keyOf(usName).Public().(ed25519.PublicKey), nil
}

// mediaOrigins are the servers a media fetch meets: hs2.test, with the
// federation media endpoints behind a real X-Matrix verifier; old.test,
// which only has the deprecated client endpoints; and a CDN at
// 127.0.0.1 that hs2.test's Location answers point to.
type mediaOrigins struct {
	resolve map[string]string
	roots   *x509.CertPool
	cdnURL  string
}

func startTLSServer(t *testing.T, host string, roots *x509.CertPool, h http.Handler) string {
	t.Helper()
	cert, err := tlscert.Load(tlscert.Config{DataDir: t.TempDir(), Hosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(cert.CertPath)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(pem)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.Certificate}, MinVersion: tls.VersionTLS12}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// writeMultipart answers as GET /media/download does: {} then a part
// with the given headers and body.
func writeMultipart(w http.ResponseWriter, h textproto.MIMEHeader, body string) {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	meta, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	io.WriteString(meta, "{}")
	part, _ := mw.CreatePart(h)
	io.WriteString(part, body)
	mw.Close()
}

func startMediaOrigins(t *testing.T) *mediaOrigins {
	t.Helper()
	o := &mediaOrigins{resolve: map[string]string{}, roots: x509.NewCertPool()}

	cdn := http.NewServeMux()
	cdn.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			server.WriteError(w, mxerr.Forbidden("a Location is fetched without our signature"))
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Disposition", "attachment; filename=cdn.png")
		io.WriteString(w, "from the cdn")
	})
	o.cdnURL = "https://" + startTLSServer(t, "127.0.0.1", o.roots, cdn) + "/file"

	fed := http.NewServeMux()
	v := transport.NewVerifier("hs2.test", usKey{})
	fed.Handle("GET /_matrix/federation/v1/media/download/{id}", fedhttp.Wrap(v, 0, func(w http.ResponseWriter, r *http.Request, _ *fedhttp.Request) {
		switch r.PathValue("id") {
		case "abc":
			writeMultipart(w, textproto.MIMEHeader{"Content-Type": {"text/plain"}, "Content-Disposition": {`inline; filename="a b.txt"`}}, "hello")
		case "redir":
			writeMultipart(w, textproto.MIMEHeader{"Location": {o.cdnURL}}, "")
		case "big":
			writeMultipart(w, textproto.MIMEHeader{"Content-Type": {"application/octet-stream"}}, strings.Repeat("x", 100))
		case "huge":
			// Announced in Content-Length: refused before reading.
			w.Header().Set("Content-Length", fmt.Sprint(1<<20))
			w.Header().Set("Content-Type", "multipart/mixed; boundary=b")
			w.WriteHeader(http.StatusOK)
		case "notmultipart":
			server.WriteJSON(w, http.StatusOK, map[string]any{})
		case "badmeta":
			mw := multipart.NewWriter(w)
			w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
			p, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain"}})
			io.WriteString(p, "not metadata")
			mw.Close()
		case "onepart":
			mw := multipart.NewWriter(w)
			w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
			p, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
			io.WriteString(p, "{}")
			mw.Close()
		case "pending":
			server.WriteError(w, mxerr.New(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded"))
		case "toolarge":
			server.WriteError(w, mxerr.New(http.StatusBadGateway, mxerr.CodeTooLarge, "Content is too large to serve"))
		default:
			server.WriteError(w, mxerr.NotFound("Media not found"))
		}
	}))
	fed.Handle("GET /_matrix/federation/v1/media/thumbnail/{id}", fedhttp.Wrap(v, 0, func(w http.ResponseWriter, r *http.Request, _ *fedhttp.Request) {
		q := r.URL.Query()
		if r.PathValue("id") != "abc" {
			server.WriteError(w, mxerr.NotFound("Media not found"))
			return
		}
		writeMultipart(w, textproto.MIMEHeader{"Content-Type": {"image/png"}},
			fmt.Sprintf("thumb %sx%s %s animated=%q", q.Get("width"), q.Get("height"), q.Get("method"), q.Get("animated")))
	}))
	o.resolve["hs2.test"] = startTLSServer(t, "hs2.test", o.roots, fed)

	// old.test predates the federation media endpoints: whatever it does
	// not know is 404 M_UNRECOGNIZED, as Synapse answers.
	old := http.NewServeMux()
	old.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		server.WriteError(w, mxerr.New(http.StatusNotFound, mxerr.CodeUnrecognized, "Unrecognized request"))
	})
	legacy := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("allow_remote") != "false" || r.PathValue("server") != "old.test" {
			server.WriteError(w, mxerr.InvalidParam("want allow_remote=false for my own media"))
			return
		}
		if r.PathValue("id") != "abc" {
			server.WriteError(w, mxerr.NotFound("Media not found"))
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Disposition", "attachment; filename=old.txt")
		kind, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/_matrix/media/v3/"), "/")
		fmt.Fprintf(w, "legacy %s w=%s", kind, r.URL.Query().Get("width"))
	}
	old.HandleFunc("GET /_matrix/media/v3/download/{server}/{id}", legacy)
	old.HandleFunc("GET /_matrix/media/v3/thumbnail/{server}/{id}", legacy)
	o.resolve["old.test"] = startTLSServer(t, "old.test", o.roots, old)

	// down.test is a port nothing listens on any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.resolve["down.test"] = ln.Addr().String()
	ln.Close()
	return o
}

// newMediaFederation is our Federation (hs1.test), trusting the origins.
func newMediaFederation(t *testing.T, backend string, o *mediaOrigins) *Federation {
	t.Helper()
	dsn, dir := storagetest.Fresh(t, backend)
	db, err := storage.Open(context.Background(), dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f, err := New(Config{
		ServerName: usName, KeyID: testKeyID, Key: keyOf(usName),
		Resolve: o.resolve, RootCAs: o.roots, RequestTimeout: 5 * time.Second,
	}, Deps{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFetchMedia(t *testing.T) {
	o := startMediaOrigins(t)
	onBackends(t, func(t *testing.T, backend string) {
		f := newMediaFederation(t, backend, o)
		type want struct {
			body, contentType, disposition string
			status                         int    // of a *mxerr.MatrixError
			code                           string // its errcode
			plainErr                       bool   // any other error
		}
		tests := []struct {
			name     string
			server   string
			id       string
			thumb    *fedlocal.ThumbnailSize
			maxBytes int64
			want     want
		}{
			{"download", "hs2.test", "abc", nil, 1000,
				want{body: "hello", contentType: "text/plain", disposition: `inline; filename="a b.txt"`}},
			{"thumbnail", "hs2.test", "abc", &fedlocal.ThumbnailSize{Width: 32, Height: 24, Crop: true}, 1000,
				want{body: `thumb 32x24 crop animated=""`, contentType: "image/png"}},
			{"animated thumbnail", "hs2.test", "abc", &fedlocal.ThumbnailSize{Width: 96, Height: 96, Animated: true}, 1000,
				want{body: `thumb 96x96 scale animated="true"`, contentType: "image/png"}},
			{"Location followed without auth", "hs2.test", "redir", nil, 1000,
				want{body: "from the cdn", contentType: "image/png", disposition: "attachment; filename=cdn.png"}},
			{"over the limit: body cut after maxBytes+1", "hs2.test", "big", nil, 10,
				want{body: strings.Repeat("x", 11), contentType: "application/octet-stream"}},
			{"announced over the limit", "hs2.test", "huge", nil, 10, want{status: http.StatusBadGateway, code: mxerr.CodeTooLarge}},
			{"origin says too large", "hs2.test", "toolarge", nil, 10, want{status: http.StatusBadGateway, code: mxerr.CodeTooLarge}},
			{"not yet uploaded", "hs2.test", "pending", nil, 10, want{status: http.StatusGatewayTimeout, code: "M_NOT_YET_UPLOADED"}},
			{"unknown media", "hs2.test", "nope", nil, 10, want{status: http.StatusNotFound, code: mxerr.CodeNotFound}},
			{"unknown thumbnail", "hs2.test", "nope", &fedlocal.ThumbnailSize{Width: 32, Height: 32}, 10,
				want{status: http.StatusNotFound, code: mxerr.CodeNotFound}},
			{"not multipart", "hs2.test", "notmultipart", nil, 10, want{plainErr: true}},
			{"first part not JSON", "hs2.test", "badmeta", nil, 10, want{plainErr: true}},
			{"no content part", "hs2.test", "onepart", nil, 10, want{plainErr: true}},
			{"legacy fallback", "old.test", "abc", nil, 1000,
				want{body: "legacy download w=", contentType: "text/plain", disposition: "attachment; filename=old.txt"}},
			{"legacy thumbnail fallback", "old.test", "abc", &fedlocal.ThumbnailSize{Width: 64, Height: 64}, 1000,
				want{body: "legacy thumbnail w=64", contentType: "text/plain", disposition: "attachment; filename=old.txt"}},
			{"legacy unknown", "old.test", "nope", nil, 1000, want{status: http.StatusNotFound, code: mxerr.CodeNotFound}},
			{"our own server", usName, "abc", nil, 1000, want{status: http.StatusNotFound, code: mxerr.CodeNotFound}},
			{"bad media ID", "hs2.test", "a/../b", nil, 1000, want{status: http.StatusNotFound, code: mxerr.CodeNotFound}},
			{"unreachable server", "down.test", "abc", nil, 1000, want{plainErr: true}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				file, err := f.FetchMedia(context.Background(), tc.server, tc.id, tc.thumb, tc.maxBytes)
				if tc.want.status != 0 || tc.want.plainErr {
					if err == nil {
						file.Body.Close()
						t.Fatal("no error")
					}
					var me *mxerr.MatrixError
					isMatrix := errors.As(err, &me)
					if tc.want.plainErr && isMatrix {
						t.Fatalf("got %v, want a plain error (502 M_UNKNOWN for the client)", err)
					}
					if tc.want.status != 0 && (!isMatrix || me.Status != tc.want.status || me.Code != tc.want.code) {
						t.Fatalf("got %v, want %d %s", err, tc.want.status, tc.want.code)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(file.Body)
				file.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != tc.want.body || file.ContentType != tc.want.contentType || file.Disposition != tc.want.disposition {
					t.Fatalf("got %q %q %q, want %q %q %q", b, file.ContentType, file.Disposition,
						tc.want.body, tc.want.contentType, tc.want.disposition)
				}
			})
		}
	})
}
