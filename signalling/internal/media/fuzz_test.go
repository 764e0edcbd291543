package media

import (
	"bytes"
	"errors"
	"image"
	"os"
	"testing"
)

// FuzzMakeThumbnail feeds arbitrary bytes to the thumbnailer: it must
// never panic, never exceed the pixel limit, and whatever it returns must
// be an image of the planned size.
func FuzzMakeThumbnail(f *testing.F) {
	f.Add(encodePNG(f, testImage(40, 30)), 32, 32, true)
	f.Add(encodeJPEG(f, testImage(40, 30)), 32, 32, false)
	f.Add(encodeGIF(f, testImage(40, 30)), 96, 96, false)
	f.Add(pngBomb(f, 1<<16, 1<<16), 32, 32, true)
	for _, name := range []string{"testdata/blue-purple-pink.lossy.webp", "testdata/blue-purple-pink.lossless.webp"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 32, 32, true)
	}
	const maxPixels = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte, w, h int, crop bool) {
		q := thumbRequest{w: roundUpSize(max(w, 1)), h: roundUpSize(max(h, 1)), crop: crop}
		res, err := makeThumbnail(bytes.NewReader(data), q, maxPixels)
		if err != nil {
			if !errors.Is(err, errUnthumbnailable) && !errors.Is(err, errTooManyPixels) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("thumbnailed what image.DecodeConfig rejects: %v", err)
		}
		if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
			t.Fatalf("thumbnailed a %dx%d image over the limit", cfg.Width, cfg.Height)
		}
		if res.original {
			return
		}
		out, _, err := image.DecodeConfig(bytes.NewReader(res.data))
		want, _ := plan(cfg.Width, cfg.Height, q)
		if err != nil || out.Width != want.X || out.Height != want.Y {
			t.Fatalf("thumbnail %dx%d (%v), planned %v", out.Width, out.Height, err, want)
		}
	})
}
