package media

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// create calls POST /_matrix/media/v1/create as token and returns the
// media ID and unused_expires_at.
func (h *harness) create(token string) (string, int64) {
	h.t.Helper()
	res := h.do(request{method: http.MethodPost, path: "/_matrix/media/v1/create", token: token, body: strings.NewReader("{}")})
	if res.status != http.StatusOK {
		h.t.Fatalf("create: %d %s", res.status, res.body)
	}
	var out struct {
		URI     string `json:"content_uri"`
		Expires int64  `json:"unused_expires_at"`
	}
	res.json(h.t, &out)
	id, ok := strings.CutPrefix(out.URI, "mxc://"+ourServer+"/")
	if !ok || !validMediaID(id) {
		h.t.Fatalf("content_uri %q", out.URI)
	}
	return id, out.Expires
}

func (h *harness) put(token, id, content string) response {
	h.t.Helper()
	return h.do(request{method: http.MethodPut, path: "/_matrix/media/v3/upload/" + ourServer + "/" + id + "?filename=late.txt",
		token: token, body: strings.NewReader(content), header: map[string]string{"Content-Type": "text/plain"}})
}

func TestAsyncUpload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{MaxUploadBytes: 100}, Deps{})
		id, expires := h.create(aliceTok)
		if want := h.nowMS.Load() + DefaultUnusedExpiry.Milliseconds(); expires != want {
			t.Fatalf("unused_expires_at %d, want %d", expires, want)
		}
		download := "/_matrix/client/v1/media/download/" + ourServer + "/" + id

		// Not uploaded yet: 504 once timeout_ms has passed.
		wantError(t, h.get(download+"?timeout_ms=0", aliceTok), http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED")
		wantError(t, h.get("/_matrix/media/v3/thumbnail/"+ourServer+"/"+id+"?width=32&height=32&timeout_ms=1", ""),
			http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED")

		// A download waiting for the upload gets it the moment it lands.
		got := make(chan response, 1)
		go func() { got <- h.get(download+"?timeout_ms=30000", bobTok) }()
		waitFor(t, "the download to wait", func() bool { return h.m.uploaded.len() == 1 })

		// Only the creator may upload, and not too much.
		wantError(t, h.put(bobTok, id, "bob's"), http.StatusForbidden, "M_FORBIDDEN")
		wantError(t, h.put(aliceTok, id, strings.Repeat("x", 101)), http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
		if res := h.put(aliceTok, id, "finally"); res.status != http.StatusOK || string(res.body) != "{}" {
			t.Fatalf("PUT: %d %s", res.status, res.body)
		}
		select {
		case res := <-got:
			if res.status != http.StatusOK || string(res.body) != "finally" ||
				res.header.Get("Content-Disposition") != "inline; filename=late.txt" {
				t.Fatalf("waiting download: %d %q %v", res.status, res.body, res.header)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiting download did not return")
		}
		if n := h.m.uploaded.len(); n != 0 {
			t.Fatalf("%d waiter entries leaked", n)
		}

		// Once is all.
		wantError(t, h.put(aliceTok, id, "again"), http.StatusConflict, "M_CANNOT_OVERWRITE_MEDIA")
		// Unknown IDs, and IDs of other servers.
		wantError(t, h.put(aliceTok, "AAAAAAAAAAAAAAAAAAAAAAAA", "x"), http.StatusNotFound, "M_NOT_FOUND")
		res := h.do(request{method: http.MethodPut, path: "/_matrix/media/v3/upload/other.example/" + id, token: aliceTok, body: strings.NewReader("x")})
		wantError(t, res, http.StatusNotFound, "M_NOT_FOUND")

		// An ID left unused lapses.
		lapsing, _ := h.create(aliceTok)
		h.nowMS.Add(DefaultUnusedExpiry.Milliseconds())
		wantError(t, h.put(aliceTok, lapsing, "late"), http.StatusNotFound, "M_NOT_FOUND")
		wantError(t, h.get("/_matrix/client/v1/media/download/"+ourServer+"/"+lapsing, aliceTok), http.StatusNotFound, "M_NOT_FOUND")
	})
}

func TestCreateLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{MaxPendingUploads: 2}, Deps{})
		first, _ := h.create(aliceTok)
		h.nowMS.Add(1000)
		h.create(aliceTok)
		res := h.do(request{method: http.MethodPost, path: "/_matrix/media/v1/create", token: aliceTok})
		wantError(t, res, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
		var body struct {
			Retry int64 `json:"retry_after_ms"`
		}
		res.json(t, &body)
		if want := DefaultUnusedExpiry.Milliseconds() - 1000; body.Retry != want {
			t.Fatalf("retry_after_ms %d, want %d", body.Retry, want)
		}
		// Other users have their own allowance.
		h.create(bobTok)
		// Uploading frees a slot.
		if res := h.put(aliceTok, first, "done"); res.status != http.StatusOK {
			t.Fatalf("PUT: %d %s", res.status, res.body)
		}
		h.create(aliceTok)
		// So does lapsing: the lapsed rows are removed.
		h.nowMS.Add(DefaultUnusedExpiry.Milliseconds())
		h.create(aliceTok)
		h.create(aliceTok)
		if n := h.rows(); n != 4 { // first (uploaded), bob's, and the last two
			t.Fatalf("%d rows, want 4", n)
		}
	})
}
