package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// fakeRemote stands in for federation: it serves fixed content per
// server/ID and counts fetches.
type fakeRemote struct {
	mu      sync.Mutex // guards fetches
	fetches int
	content map[string]string
}

func (f *fakeRemote) Fetch(_ context.Context, server, id string, _ int64) (*RemoteMedia, error) {
	f.mu.Lock()
	f.fetches++
	f.mu.Unlock()
	switch c, ok := f.content[server+"/"+id]; {
	case id == "broken":
		return nil, errors.New("connection refused")
	case !ok:
		return nil, mxerr.NotFound("Not found on the origin")
	default:
		return &RemoteMedia{Body: io.NopCloser(bytes.NewReader([]byte(c))), ContentType: "text/plain", Filename: "remote.txt"}, nil
	}
}

func (f *fakeRemote) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

func TestRemoteMedia(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		remote := &fakeRemote{content: map[string]string{
			"other.example/abc": "from afar",
			"other.example/big": "more than ten bytes",
		}}
		h := newHarness(t, backend, Config{MaxUploadBytes: 10}, Deps{Remote: remote})

		// allow_remote=false on the deprecated endpoint: no fetch.
		wantError(t, h.get("/_matrix/media/v3/download/other.example/abc?allow_remote=false", ""), http.StatusNotFound, "M_NOT_FOUND")
		if remote.count() != 0 {
			t.Fatal("fetched despite allow_remote=false")
		}
		for i := 0; i < 2; i++ {
			res := h.get("/_matrix/client/v1/media/download/other.example/abc", aliceTok)
			if res.status != http.StatusOK || string(res.body) != "from afar" || res.header.Get("Content-Disposition") != "inline; filename=remote.txt" {
				t.Fatalf("download %d: %d %q %v", i, res.status, res.body, res.header)
			}
		}
		if n := remote.count(); n != 1 {
			t.Fatalf("%d fetches, want 1 (then the cache)", n)
		}
		// Cached now, so allow_remote=false finds it.
		if res := h.get("/_matrix/media/v3/download/other.example/abc?allow_remote=false", ""); res.status != http.StatusOK {
			t.Fatalf("cached remote media: %d %s", res.status, res.body)
		}
		wantError(t, h.get("/_matrix/client/v1/media/download/other.example/big", aliceTok), http.StatusBadGateway, "M_TOO_LARGE")
		wantError(t, h.get("/_matrix/client/v1/media/download/other.example/broken", aliceTok), http.StatusBadGateway, "M_UNKNOWN")
		wantError(t, h.get("/_matrix/client/v1/media/download/other.example/gone", aliceTok), http.StatusNotFound, "M_NOT_FOUND")
		wantError(t, h.get("/_matrix/media/v3/download/other.example/abc?allow_remote=maybe", ""), http.StatusBadRequest, "M_INVALID_PARAM")
		if n := h.rows(); n != 1 {
			t.Fatalf("%d rows, want only the fetched one", n)
		}
	})
}
