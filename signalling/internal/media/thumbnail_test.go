package media

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"
	"os"
	"strconv"
	"testing"

	_ "golang.org/x/image/webp" // registers WebP with image.Decode for the checks
)

// testImage is a w×h gradient, so that scaling and cropping show.
func testImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			copy(img.Pix[img.PixOffset(x, y):], []byte{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeGIF(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngBomb is a valid PNG header claiming w×h pixels, with no pixel data:
// a decoder that trusted it would allocate w×h×4 bytes.
func pngBomb(t testing.TB, w, h uint32) []byte {
	b := encodePNG(t, testImage(1, 1))
	// IHDR data is at 16..29, its CRC at 29..33 (over type and data).
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func thumbPath(id, query string) string {
	return "/_matrix/client/v1/media/thumbnail/" + ourServer + "/" + id + "?" + query
}

func TestThumbnails(t *testing.T) {
	webp, err := os.ReadFile("testdata/blue-purple-pink.lossy.webp")
	if err != nil {
		t.Fatal(err)
	}
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{}, Deps{})
		big := testImage(640, 320)
		pngID := h.upload(aliceTok, encodePNG(t, big), "image/png", "")
		smallJPEG := encodeJPEG(t, testImage(50, 40))
		jpegID := h.upload(aliceTok, encodeJPEG(t, big), "image/jpeg", "")
		smallJPEGID := h.upload(aliceTok, smallJPEG, "image/jpeg", "")
		smallPNGID := h.upload(aliceTok, encodePNG(t, testImage(50, 40)), "image/png", "")
		gifID := h.upload(aliceTok, encodeGIF(t, testImage(300, 300)), "image/gif", "")
		smallGIF := encodeGIF(t, testImage(20, 20))
		smallGIFID := h.upload(aliceTok, smallGIF, "image/gif", "")
		webpID := h.upload(aliceTok, webp, "image/webp", "")

		tests := []struct {
			name     string
			id       string
			query    string
			wantType string
			wantW    int
			wantH    int
			original []byte // the response must be exactly these bytes
		}{
			{"crop 96", pngID, "width=96&height=96&method=crop", "image/png", 96, 96, nil},
			{"crop 32", pngID, "width=32&height=32&method=crop", "image/png", 32, 32, nil},
			{"crop rounds up", pngID, "width=100&height=90&method=crop", "image/png", 128, 96, nil},
			{"scale 320x240 keeps aspect, covers", pngID, "width=320&height=240&method=scale", "image/png", 480, 240, nil},
			{"scale is the default", pngID, "width=200&height=64", "image/png", 240, 120, nil},
			{"no upscaling", pngID, "width=640&height=480", "image/png", 640, 320, nil},
			{"jpeg stays jpeg", jpegID, "width=320&height=240", "image/jpeg", 480, 240, nil},
			{"small jpeg is its own thumbnail", smallJPEGID, "width=96&height=96&method=crop", "image/jpeg", 50, 40, smallJPEG},
			{"small png re-encoded", smallPNGID, "width=320&height=240", "image/png", 50, 40, nil},
			{"crop taller than the image", smallPNGID, "width=32&height=96&method=crop", "image/png", 32, 40, nil},
			{"gif becomes a still png", gifID, "width=96&height=96&method=crop", "image/png", 96, 96, nil},
			{"small gif, animation unwanted", smallGIFID, "width=96&height=96&animated=false", "image/png", 20, 20, nil},
			{"small gif, animation wanted", smallGIFID, "width=96&height=96&animated=true", "image/gif", 20, 20, smallGIF},
			{"animated wanted but large: still", gifID, "width=96&height=96&animated=true", "image/png", 96, 96, nil},
			{"webp", webpID, "width=32&height=32&method=crop", "image/png", 32, 32, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h.t = t
				for _, p := range []struct{ path, token string }{
					{thumbPath(tc.id, tc.query), bobTok},
					{"/_matrix/media/v3/thumbnail/" + ourServer + "/" + tc.id + "?" + tc.query, ""},
				} {
					res := h.get(p.path, p.token)
					if res.status != http.StatusOK {
						t.Fatalf("%s: %d %s", p.path, res.status, res.body)
					}
					if ct := res.header.Get("Content-Type"); ct != tc.wantType {
						t.Fatalf("Content-Type %q, want %q", ct, tc.wantType)
					}
					ext := map[string]string{"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}[tc.wantType]
					if d := res.header.Get("Content-Disposition"); d != "inline; filename=thumbnail."+ext {
						t.Errorf("Content-Disposition %q", d)
					}
					if res.header.Get("Cross-Origin-Resource-Policy") != "cross-origin" || res.header.Get("Content-Security-Policy") == "" {
						t.Errorf("missing security headers: %v", res.header)
					}
					if tc.original != nil && !bytes.Equal(res.body, tc.original) {
						t.Fatalf("want the original bytes back")
					}
					cfg, _, err := image.DecodeConfig(bytes.NewReader(res.body))
					if err != nil || cfg.Width != tc.wantW || cfg.Height != tc.wantH {
						t.Fatalf("thumbnail %dx%d (%v), want %dx%d", cfg.Width, cfg.Height, err, tc.wantW, tc.wantH)
					}
				}
			})
		}
	})
}

// TestThumbnailCached: a generated thumbnail is kept on disk and served
// from there on.
func TestThumbnailCached(t *testing.T) {
	h := newHarness(t, "sqlite", Config{}, Deps{})
	id := h.upload(aliceTok, encodePNG(t, testImage(400, 400)), "image/png", "")
	if res := h.get(thumbPath(id, "width=96&height=96&method=crop"), aliceTok); res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	cached := h.files("thumbnails")
	if len(cached) != 1 {
		t.Fatalf("cached thumbnails %v, want one", cached)
	}
	// Replace the cached file with a marker image: if it is served, the
	// cache was used rather than the thumbnail made again.
	if err := os.WriteFile(cached[0], encodePNG(t, testImage(7, 7)), 0o600); err != nil {
		t.Fatal(err)
	}
	// 90x90 rounds up to the same 96x96 crop.
	res := h.get(thumbPath(id, "width=90&height=90&method=crop"), aliceTok)
	cfg, err := png.DecodeConfig(bytes.NewReader(res.body))
	if err != nil || cfg.Width != 7 {
		t.Fatalf("got a %dx%d thumbnail (%v), want the cached 7x7", cfg.Width, cfg.Height, err)
	}
	// Another size is another file.
	h.get(thumbPath(id, "width=320&height=240"), aliceTok)
	if n := len(h.files("thumbnails")); n != 2 {
		t.Fatalf("%d cached thumbnails, want 2", n)
	}
}

func TestThumbnailErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend, Config{MaxImagePixels: 100 * 100}, Deps{})
		img := h.upload(aliceTok, encodePNG(t, testImage(100, 100)), "image/png", "")
		tests := []struct {
			name    string
			content []byte // uploaded as contentType, unless empty
			ctype   string
			query   string
			status  int
			code    string
		}{
			{"not an image type", []byte("hello"), "text/plain", "width=32&height=32", 400, "M_UNKNOWN"},
			{"image type, not an image", []byte("definitely not a png"), "image/png", "width=32&height=32", 400, "M_UNKNOWN"},
			{"truncated png", encodePNG(t, testImage(50, 50))[:60], "image/png", "width=32&height=32", 400, "M_UNKNOWN"},
			{"truncated jpeg", encodeJPEG(t, testImage(50, 50))[:200], "image/jpeg", "width=32&height=32", 400, "M_UNKNOWN"},
			{"gif claiming to be png", encodeGIF(t, testImage(60, 60)), "image/png", "width=32&height=32", 200, ""},
			{"png bomb", pngBomb(t, 1<<20, 1<<20), "image/png", "width=32&height=32", 413, "M_TOO_LARGE"},
			{"one pixel over the limit", encodePNG(t, testImage(101, 100)), "image/png", "width=32&height=32", 413, "M_TOO_LARGE"},
			{"missing width", nil, "", "height=32", 400, "M_MISSING_PARAM"},
			{"missing height", nil, "", "width=32", 400, "M_MISSING_PARAM"},
			{"width not a number", nil, "", "width=big&height=32", 400, "M_INVALID_PARAM"},
			{"negative height", nil, "", "width=32&height=-1", 400, "M_INVALID_PARAM"},
			{"zero width", nil, "", "width=0&height=32", 400, "M_INVALID_PARAM"},
			{"huge width", nil, "", "width=99999999999999999999&height=32", 400, "M_INVALID_PARAM"},
			{"unknown method", nil, "", "width=32&height=32&method=stretch", 400, "M_INVALID_PARAM"},
			{"bad animated", nil, "", "width=32&height=32&animated=yes", 400, "M_INVALID_PARAM"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h.t = t
				id := img
				if tc.content != nil {
					id = h.upload(aliceTok, tc.content, tc.ctype, "")
				}
				res := h.get(thumbPath(id, tc.query), aliceTok)
				if tc.status == 200 {
					if res.status != 200 {
						t.Fatalf("got %d %s, want 200", res.status, res.body)
					}
					return
				}
				wantError(t, res, tc.status, tc.code)
			})
		}
		if n := len(h.files("thumbnails")); n != 1 { // only the GIF's
			t.Fatalf("%d cached thumbnails, want 1", n)
		}
	})
}

func TestPlan(t *testing.T) {
	tests := []struct {
		w, h    int
		q       thumbRequest
		out     image.Point
		srcRect image.Rectangle
	}{
		{1000, 500, thumbRequest{w: 96, h: 96, crop: true}, image.Pt(96, 96), image.Rect(250, 0, 750, 500)},
		{500, 1000, thumbRequest{w: 96, h: 96, crop: true}, image.Pt(96, 96), image.Rect(0, 250, 500, 750)},
		{1000, 500, thumbRequest{w: 320, h: 240}, image.Pt(480, 240), image.Rect(0, 0, 1000, 500)},
		{500, 1000, thumbRequest{w: 320, h: 240}, image.Pt(320, 640), image.Rect(0, 0, 500, 1000)},
		{100, 100, thumbRequest{w: 320, h: 240}, image.Pt(100, 100), image.Rect(0, 0, 100, 100)},
		{100, 100, thumbRequest{w: 320, h: 240, crop: true}, image.Pt(100, 100), image.Rect(0, 0, 100, 100)},
		{100, 100, thumbRequest{w: 64, h: 32, crop: true}, image.Pt(64, 32), image.Rect(0, 25, 100, 75)},
		{1, 10000, thumbRequest{w: 32, h: 32, crop: true}, image.Pt(1, 32), image.Rect(0, 4984, 1, 5016)},
		{10000, 1, thumbRequest{w: 32, h: 32}, image.Pt(10000, 1), image.Rect(0, 0, 10000, 1)},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.w)+"x"+strconv.Itoa(tc.h)+" "+tc.q.variant(), func(t *testing.T) {
			out, src := plan(tc.w, tc.h, tc.q)
			if out != tc.out || src != tc.srcRect {
				t.Fatalf("plan = %v %v, want %v %v", out, src, tc.out, tc.srcRect)
			}
			// Never smaller than asked unless the image is; never upscaled.
			if (out.X < tc.q.w && out.X < tc.w) || (out.Y < tc.q.h && out.Y < tc.h) || out.X > max(tc.w, tc.q.w) || out.Y > max(tc.h, tc.q.h) {
				t.Fatalf("plan %v breaks the size rules for %dx%d", out, tc.w, tc.h)
			}
		})
	}
}
