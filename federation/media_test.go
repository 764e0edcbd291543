package federation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"net/http"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// TestRemoteMedia: bob on hs2 downloads alice's media from hs1 through
// his own server (Client-Server API, "Content repository": "the content
// ... from the client's own homeserver, which must first transfer the
// content from the origin"), which fetches it over federation once and
// then serves it from its cache, with hs1 gone.
func TestRemoteMedia(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testRemoteMedia(t, backend) })
	}
}

func testRemoteMedia(t *testing.T, backend string) {
	ctx := context.Background()
	f := newFederation(t, backend, "hs1", "hs2")
	hs1, hs2 := f.Servers["hs1"], f.Servers["hs2"]
	alice := register(t, hs1, "alice")
	bob := register(t, hs2, "bob")

	upload := func(data []byte, contentType, name string) string {
		t.Helper()
		res, err := alice.UploadBytesWithName(ctx, data, contentType, name)
		if err != nil {
			t.Fatalf("upload %s: %v", name, err)
		}
		if res.ContentURI.Homeserver != "hs1" {
			t.Fatalf("uploaded as %s", res.ContentURI)
		}
		return res.ContentURI.FileID
	}
	text := upload([]byte("hello from hs1"), "text/plain", "greeting.txt")
	pic := upload(testPNG(t, 64, 48), "image/png", "pic.png")
	unfetched := upload([]byte("never asked for before hs1 stops"), "text/plain", "late.txt")

	// get fetches path from hs2 as bob.
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, hs2.ClientURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}
	wantText := func(when string) {
		t.Helper()
		for _, path := range []string{
			"/_matrix/client/v1/media/download/hs1/" + text,
			"/_matrix/media/v3/download/hs1/" + text,
		} {
			res, body := get(path)
			if res.StatusCode != http.StatusOK || string(body) != "hello from hs1" {
				t.Fatalf("%s: %s: %d %q", when, path, res.StatusCode, body)
			}
			ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
			if cd := res.Header.Get("Content-Disposition"); ct != "text/plain" || cd != "inline; filename=greeting.txt" {
				t.Errorf("%s: %s: Content-Type %q, Content-Disposition %q", when, path, res.Header.Get("Content-Type"), cd)
			}
		}
	}
	wantThumbnail := func(when string) {
		t.Helper()
		res, body := get("/_matrix/client/v1/media/thumbnail/hs1/" + pic + "?width=32&height=32&method=scale")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: thumbnail: %d %s", when, res.StatusCode, body)
		}
		img, format, err := image.Decode(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: thumbnail (%s) does not decode: %v", when, res.Header.Get("Content-Type"), err)
		}
		if b := img.Bounds(); b.Dx() > 64 || b.Dy() > 48 || b.Dx() < 1 || format != "png" {
			t.Errorf("%s: thumbnail %s %v", when, format, b)
		}
	}
	wantError := func(path string, status int, code string) {
		t.Helper()
		res, body := get(path)
		var e struct {
			ErrCode string `json:"errcode"`
		}
		if res.StatusCode != status || json.Unmarshal(body, &e) != nil || e.ErrCode != code {
			t.Fatalf("%s: %d %s, want %d %s", path, res.StatusCode, body, status, code)
		}
	}

	wantText("first download")
	wantThumbnail("first thumbnail")
	wantError("/_matrix/client/v1/media/download/hs1/doesNotExist", http.StatusNotFound, "M_NOT_FOUND")
	wantError("/_matrix/client/v1/media/thumbnail/hs1/doesNotExist?width=32&height=32", http.StatusNotFound, "M_NOT_FOUND")

	// With hs1 gone, what hs2 fetched is served from its cache, and
	// what it did not fetch cannot be had.
	hs1.Stop(t)
	wantText("from the cache")
	wantThumbnail("thumbnail from the cache")
	wantError("/_matrix/client/v1/media/download/hs1/"+unfetched, http.StatusBadGateway, "M_UNKNOWN")
}

// testPNG is a w×h gradient.
func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(x * 4), G: uint8(y * 5), B: 128, A: 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
