package signalling_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// FetchMedia serves hs2.test's media "pic", named with RFC 6266's
// filename* form; anything else is the origin's 404.
func (f *fakeFederation) FetchMedia(_ context.Context, server, mediaID string, _ *fedlocal.ThumbnailSize, _ int64) (*fedlocal.MediaFile, error) {
	if server != "hs2.test" || mediaID != "pic" {
		return nil, mxerr.NotFound("Media not found on its server")
	}
	return &fedlocal.MediaFile{
		Body:        io.NopCloser(bytes.NewReader([]byte("remote bytes"))),
		ContentType: "text/plain",
		Disposition: `attachment; filename*=utf-8''caf%C3%A9.txt`,
	}, nil
}

// TestRemoteMediaThroughFederation: a download of another server's media
// reaches federation's FetchMedia, and the origin's file name and errors
// reach the client.
func TestRemoteMediaThroughFederation(t *testing.T) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := startFedPair(t, backend)
			get := func(path string) (*http.Response, string) {
				t.Helper()
				res, err := http.Get(p.hs1.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				b, err := io.ReadAll(res.Body)
				if err != nil {
					t.Fatal(err)
				}
				return res, string(b)
			}
			res, body := get("/_matrix/media/v3/download/hs2.test/pic")
			if res.StatusCode != http.StatusOK || body != "remote bytes" {
				t.Fatalf("download: %d %q", res.StatusCode, body)
			}
			if cd := res.Header.Get("Content-Disposition"); cd != `inline; filename*=utf-8''caf%C3%A9.txt` {
				t.Errorf("Content-Disposition %q, want the origin's name café.txt", cd)
			}
			if res, body := get("/_matrix/media/v3/download/hs2.test/nope"); res.StatusCode != http.StatusNotFound {
				t.Errorf("unknown remote media: %d %s", res.StatusCode, body)
			}
		})
	}
}
