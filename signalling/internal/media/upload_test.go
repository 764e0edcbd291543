package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUploadDownload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{}, Deps{})
		tests := []struct {
			name        string
			content     string
			contentType string // sent; "" sends none
			filename    string // sent as ?filename=; "" sends none
			pathName    string // /{fileName} of the download; "" for none
			wantType    string
			wantDisp    string // disposition type
			wantName    string // filename in the disposition; "" for none
		}{
			{name: "text with name", content: "hello", contentType: "text/plain", filename: "hello.txt",
				wantType: "text/plain; charset=utf-8", wantDisp: "inline", wantName: "hello.txt"},
			{name: "text with charset", content: "hi", contentType: "text/plain; charset=iso-8859-1",
				wantType: "text/plain; charset=iso-8859-1", wantDisp: "inline"},
			{name: "html is an attachment", content: "<script>alert(1)</script>", contentType: "text/html", filename: "x.html",
				wantType: "text/html; charset=utf-8", wantDisp: "attachment", wantName: "x.html"},
			{name: "non-ASCII name", content: "%PDF-1.4", contentType: "application/pdf", filename: "résumé 履歴書.pdf",
				wantType: "application/pdf", wantDisp: "attachment", wantName: "résumé 履歴書.pdf"},
			{name: "name with quotes and spaces", content: "x", contentType: "image/png", filename: `my "best" pic.png`,
				wantType: "image/png", wantDisp: "inline", wantName: `my "best" pic.png`},
			{name: "no content type", content: "\x00\x01", wantType: "application/octet-stream", wantDisp: "attachment"},
			{name: "junk content type", content: "a", contentType: "not a type", wantType: "application/octet-stream", wantDisp: "attachment"},
			{name: "name from the path", content: "v", contentType: "video/mp4", filename: "orig.mp4", pathName: "nouveau né.mp4",
				wantType: "video/mp4", wantDisp: "inline", wantName: "nouveau né.mp4"},
			{name: "empty file", content: "", contentType: "text/plain", wantType: "text/plain; charset=utf-8", wantDisp: "inline"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h.t = t
				query := ""
				if tc.filename != "" {
					query = "?filename=" + url.QueryEscape(tc.filename)
				}
				id := h.upload(aliceTok, []byte(tc.content), tc.contentType, query)
				suffix := ourServer + "/" + id
				if tc.pathName != "" {
					suffix += "/" + url.PathEscape(tc.pathName)
				}
				for _, path := range []struct{ path, token string }{
					{"/_matrix/client/v1/media/download/" + suffix, bobTok},
					{"/_matrix/media/v3/download/" + suffix, ""}, // deprecated, unauthenticated
				} {
					res := h.get(path.path, path.token)
					if res.status != http.StatusOK || string(res.body) != tc.content {
						t.Fatalf("GET %s: %d %q, want 200 %q", path.path, res.status, res.body, tc.content)
					}
					if got := res.header.Get("Content-Type"); got != tc.wantType {
						t.Errorf("Content-Type %q, want %q", got, tc.wantType)
					}
					disp, params, err := mime.ParseMediaType(res.header.Get("Content-Disposition"))
					if err != nil || disp != tc.wantDisp || params["filename"] != tc.wantName {
						t.Errorf("Content-Disposition %q: %q %q %v, want %q %q", res.header.Get("Content-Disposition"),
							disp, params["filename"], err, tc.wantDisp, tc.wantName)
					}
					want := map[string]string{
						"Content-Security-Policy":      contentSecurityPolicy,
						"Cross-Origin-Resource-Policy": "cross-origin",
						"X-Content-Type-Options":       "nosniff",
					}
					for k, v := range want {
						if got := res.header.Get(k); got != v {
							t.Errorf("%s %q, want %q", k, got, v)
						}
					}
				}
			})
		}
	})
}

func TestDownloadRange(t *testing.T) {
	h := newHarness(t, "sqlite", Config{}, Deps{})
	id := h.upload(aliceTok, []byte("0123456789"), "text/plain", "")
	res := h.do(request{method: http.MethodGet, path: "/_matrix/client/v1/media/download/" + ourServer + "/" + id,
		token: aliceTok, header: map[string]string{"Range": "bytes=2-4"}})
	if res.status != http.StatusPartialContent || string(res.body) != "234" {
		t.Fatalf("got %d %q, want 206 \"234\"", res.status, res.body)
	}
	etag := res.header.Get("ETag")
	res = h.do(request{method: http.MethodGet, path: "/_matrix/client/v1/media/download/" + ourServer + "/" + id,
		token: aliceTok, header: map[string]string{"If-None-Match": etag}})
	if etag == "" || res.status != http.StatusNotModified {
		t.Fatalf("If-None-Match %q: got %d, want 304", etag, res.status)
	}
}

func TestUploadDedupe(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{}, Deps{})
		content := []byte("the same bytes twice")
		a := h.upload(aliceTok, content, "text/plain", "?filename=a.txt")
		b := h.upload(bobTok, content, "application/octet-stream", "?filename=b.bin")
		if a == b {
			t.Fatalf("two uploads got one media ID %s", a)
		}
		if files := h.files("content"); len(files) != 1 {
			t.Fatalf("content files %v, want one", files)
		}
		if n := h.rows(); n != 2 {
			t.Fatalf("%d rows, want 2", n)
		}
		// Each keeps its own metadata.
		res := h.get("/_matrix/client/v1/media/download/"+ourServer+"/"+b, aliceTok)
		if res.header.Get("Content-Type") != "application/octet-stream" || !strings.Contains(res.header.Get("Content-Disposition"), "b.bin") {
			t.Fatalf("second upload served with %v", res.header)
		}
	})
}

// unsized hides its length from net/http, which then sends it chunked.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestUploadTooLarge(t *testing.T) {
	const limit = 1024
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{MaxUploadBytes: limit}, Deps{})
		tests := []struct {
			name string
			body func() io.Reader
		}{
			{"announced length", func() io.Reader { return bytes.NewReader(make([]byte, limit+1)) }},
			{"chunked", func() io.Reader { return unsized{bytes.NewReader(make([]byte, 3*limit))} }},
			{"chunked one byte over", func() io.Reader { return unsized{bytes.NewReader(make([]byte, limit+1))} }},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h.t = t
				res := h.do(request{method: http.MethodPost, path: "/_matrix/media/v3/upload", token: aliceTok, body: tc.body()})
				wantError(t, res, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
				if f := h.files(""); len(f) != 0 {
					t.Fatalf("files left behind: %v", f)
				}
				if n := h.rows(); n != 0 {
					t.Fatalf("%d rows left behind", n)
				}
			})
		}
		// Exactly the limit is fine.
		h.t = t
		h.upload(aliceTok, make([]byte, limit), "", "")
		res := h.get("/_matrix/client/v1/media/config", aliceTok)
		if res.status != http.StatusOK || string(res.body) != `{"m.upload.size":1024}` {
			t.Fatalf("config: %d %s", res.status, res.body)
		}
	})
}

func TestUploadBadParams(t *testing.T) {
	h := newHarness(t, "sqlite", Config{}, Deps{})
	for _, q := range []string{"?filename=%FF%FE", "?filename=a%00b", "?filename=" + strings.Repeat("a", maxFilenameBytes+1)} {
		res := h.do(request{method: http.MethodPost, path: "/_matrix/media/v3/upload" + q, token: aliceTok, body: strings.NewReader("x")})
		wantError(t, res, http.StatusBadRequest, "M_INVALID_PARAM")
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows after refused uploads", n)
	}
}

func TestAuthRequired(t *testing.T) {
	h := newHarness(t, "sqlite", Config{}, Deps{})
	id := h.upload(aliceTok, []byte("x"), "text/plain", "")
	tests := []struct{ method, path string }{
		{"POST", "/_matrix/media/v3/upload"},
		{"POST", "/_matrix/media/v1/create"},
		{"PUT", "/_matrix/media/v3/upload/" + ourServer + "/" + id},
		{"GET", "/_matrix/client/v1/media/download/" + ourServer + "/" + id},
		{"GET", "/_matrix/client/v1/media/download/" + ourServer + "/" + id + "/f.txt"},
		{"GET", "/_matrix/client/v1/media/thumbnail/" + ourServer + "/" + id + "?width=32&height=32"},
		{"GET", "/_matrix/client/v1/media/config"},
		{"GET", "/_matrix/media/v3/config"},
		{"GET", "/_matrix/client/v1/media/preview_url?url=https://example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			h.t = t
			wantError(t, h.do(request{method: tc.method, path: tc.path, body: strings.NewReader("x")}),
				http.StatusUnauthorized, "M_MISSING_TOKEN")
			wantError(t, h.do(request{method: tc.method, path: tc.path, token: "nope", body: strings.NewReader("x")}),
				http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		})
	}
}

func TestConfigAndPreview(t *testing.T) {
	h := newHarness(t, "sqlite", Config{}, Deps{})
	for _, p := range []string{"/_matrix/client/v1/media/config", "/_matrix/media/v3/config"} {
		var got map[string]int64
		res := h.get(p, aliceTok)
		res.json(t, &got)
		if res.status != http.StatusOK || got["m.upload.size"] != DefaultMaxUploadBytes {
			t.Fatalf("%s: %d %s", p, res.status, res.body)
		}
	}
	for _, p := range []string{"/_matrix/client/v1/media/preview_url", "/_matrix/media/v3/preview_url"} {
		wantError(t, h.get(p+"?url=https://matrix.org", aliceTok), http.StatusForbidden, "M_FORBIDDEN")
	}
}

func TestUnknownMedia(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{}, Deps{})
		for _, suffix := range []string{
			ourServer + "/AAAAAAAAAAAAAAAAAAAAAAAA",
			ourServer + "/bad.id",
			ourServer + "/bad%2Fid",
			"other.example/AAAAAAAAAAAAAAAAAAAAAAAA", // remote, and no federation yet
			"bad_server!/AAAAAAAAAAAAAAAAAAAAAAAA",
		} {
			for _, p := range []string{
				"/_matrix/client/v1/media/download/" + suffix,
				"/_matrix/media/v3/download/" + suffix + "/name.txt",
				"/_matrix/client/v1/media/thumbnail/" + suffix + "?width=32&height=32",
				"/_matrix/media/v3/thumbnail/" + suffix + "?width=32&height=32",
			} {
				wantError(t, h.get(p, aliceTok), http.StatusNotFound, "M_NOT_FOUND")
			}
		}
	})
}

// TestNoRowWithoutFile: when the file cannot be put in place, the upload
// fails with no row and no temp file left.
func TestNoRowWithoutFile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{}, Deps{})
		content := []byte("unplaceable")
		sum := sha256.Sum256(content)
		hash := hex.EncodeToString(sum[:])
		// A file where the shard folder must go makes placing fail.
		if err := os.WriteFile(filepath.Join(h.dir, "content", hash[:2]), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		res := h.do(request{method: http.MethodPost, path: "/_matrix/media/v3/upload", token: aliceTok, body: bytes.NewReader(content)})
		wantError(t, res, http.StatusInternalServerError, "M_UNKNOWN")
		if n := h.rows(); n != 0 {
			t.Fatalf("%d rows for a file that is not there", n)
		}
		if f := h.files("tmp"); len(f) != 0 {
			t.Fatalf("temp files left: %v", f)
		}
	})
}
