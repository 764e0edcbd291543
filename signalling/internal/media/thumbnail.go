package media

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"strconv"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// Errors of thumbnail generation.
var (
	// errUnthumbnailable: not an image we can decode.
	errUnthumbnailable = errors.New("media: cannot thumbnail this content")
	// errTooManyPixels: the image is over the pixel limit.
	errTooManyPixels = errors.New("media: image too large to thumbnail")
)

// thumbnailTypes are the uploaded Content-Types we thumbnail (Synapse's
// default thumbnail formats); others get 400 without being opened.
var thumbnailTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
}

// decoders by the format name a header sniff finds; decoding with the
// right one directly, instead of image.Decode, keeps this package from
// depending on which formats some other package registered.
var decoders = map[string]struct {
	decode       func(io.Reader) (image.Image, error)
	decodeConfig func(io.Reader) (image.Config, error)
}{
	"png":  {png.Decode, png.DecodeConfig},
	"jpeg": {jpeg.Decode, jpeg.DecodeConfig},
	"gif":  {gif.Decode, gif.DecodeConfig},
	"webp": {webp.Decode, webp.DecodeConfig},
}

// sniffFormat names the image format of the file starting with head.
func sniffFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case bytes.HasPrefix(head, []byte("\xff\xd8")):
		return "jpeg"
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return "gif"
	case len(head) >= 12 && string(head[0:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return "webp"
	}
	return ""
}

// sizeLadder are the edge lengths thumbnails are made in. A request is
// rounded up to the ladder, so a client asking for every size in turn
// makes at most len²×2 thumbnails of one image; the spec's recommended
// sizes (32x32 and 96x96 crop, 320x240, 640x480 and 800x600 scale) are
// all on it. A request beyond the top gets the top: it is as large as
// any screen needs of a thumbnail.
var sizeLadder = []int{32, 48, 64, 96, 128, 160, 240, 320, 480, 600, 640, 800, 960, 1024, 1280, 1600, 1920}

func roundUpSize(v int) int {
	for _, l := range sizeLadder {
		if l >= v {
			return l
		}
	}
	return sizeLadder[len(sizeLadder)-1]
}

// thumbRequest is a thumbnail request after rounding to the ladder.
type thumbRequest struct {
	w, h     int
	crop     bool
	animated bool
}

// variant names the thumbnail in its cache file name.
func (q thumbRequest) variant() string {
	m := "scale"
	if q.crop {
		m = "crop"
	}
	return strconv.Itoa(q.w) + "x" + strconv.Itoa(q.h) + "-" + m
}

// plan returns the size of the thumbnail of a w×h image for q and the
// part of the image it shows (Client-Server API, "Thumbnails"). The
// dimensions asked for are a minimum: both methods scale the image just
// enough to cover them, never up. "scale" keeps the whole image; "crop"
// then cuts the middle to the requested size, so its aspect matches the
// request where the image is large enough.
func plan(w, h int, q thumbRequest) (out image.Point, src image.Rectangle) {
	full := image.Rect(0, 0, w, h)
	// The scale factor is max(q.w/w, q.h/h), in integers.
	sw, sh := w, h
	if int64(q.w)*int64(h) >= int64(q.h)*int64(w) {
		if q.w < w {
			sw, sh = q.w, max(1, int((int64(h)*int64(q.w)+int64(w)/2)/int64(w)))
		}
	} else if q.h < h {
		sw, sh = max(1, int((int64(w)*int64(q.h)+int64(h)/2)/int64(h))), q.h
	}
	if !q.crop {
		return image.Pt(sw, sh), full
	}
	ow, oh := min(q.w, sw), min(q.h, sh)
	cw := min(w, max(1, int((int64(ow)*int64(w)+int64(sw)/2)/int64(sw))))
	ch := min(h, max(1, int((int64(oh)*int64(h)+int64(sh)/2)/int64(sh))))
	x0, y0 := (w-cw)/2, (h-ch)/2
	return image.Pt(ow, oh), image.Rect(x0, y0, x0+cw, y0+ch)
}

// thumbResult is a generated thumbnail, or the verdict that the original
// serves as its own thumbnail.
type thumbResult struct {
	data        []byte // encoded thumbnail; nil when original
	contentType string
	// original: the image is no larger than asked and may be served as it
	// is ("servers should return the original content rather than
	// thumbnail it"): JPEGs, and other formats when animation is wanted,
	// since only re-encoding makes sure a GIF, APNG or WebP is still.
	original bool
}

// makeThumbnail makes the thumbnail of the image read from src for q,
// refusing images over maxPixels from their header, before decoding.
// It fails with errUnthumbnailable for anything it cannot decode and
// errTooManyPixels; a panicking decoder counts as undecodable.
func makeThumbnail(src io.Reader, q thumbRequest, maxPixels int64) (res thumbResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = thumbResult{}, fmt.Errorf("%w: decoder panic: %v", errUnthumbnailable, p)
		}
	}()
	br := bufio.NewReader(src)
	head, _ := br.Peek(12)
	format := sniffFormat(head)
	dec, ok := decoders[format]
	if !ok {
		return thumbResult{}, errUnthumbnailable
	}
	// DecodeConfig reads only the header, so the bytes it consumed must be
	// replayed to Decode: keep them.
	var seen bytes.Buffer
	cfg, err := dec.decodeConfig(io.TeeReader(br, &seen))
	if err != nil {
		return thumbResult{}, fmt.Errorf("%w: %v", errUnthumbnailable, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return thumbResult{}, errUnthumbnailable
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return thumbResult{}, errTooManyPixels
	}
	out, rect := plan(cfg.Width, cfg.Height, q)
	whole := out == image.Pt(cfg.Width, cfg.Height) && rect == image.Rect(0, 0, cfg.Width, cfg.Height)
	if whole && (format == "jpeg" || q.animated) {
		return thumbResult{original: true, contentType: "image/" + format}, nil
	}
	img, err := dec.decode(io.MultiReader(&seen, br))
	if err != nil {
		return thumbResult{}, fmt.Errorf("%w: %v", errUnthumbnailable, err)
	}
	// Decoders validate frame bounds against the header, but do not rely
	// on it for the crop rectangle.
	b := img.Bounds()
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return thumbResult{}, fmt.Errorf("%w: decoded size differs from header", errUnthumbnailable)
	}
	rect = rect.Add(b.Min)
	var thumb image.Image = img
	if !whole {
		dst := image.NewRGBA(image.Rect(0, 0, out.X, out.Y))
		draw.BiLinear.Scale(dst, dst.Bounds(), img, rect, draw.Src, nil)
		thumb = dst
	}
	var buf bytes.Buffer
	res.contentType = "image/png"
	if format == "jpeg" {
		res.contentType = "image/jpeg"
		err = jpeg.Encode(&buf, thumb, &jpeg.Options{Quality: 80})
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, thumb)
	}
	if err != nil {
		return thumbResult{}, fmt.Errorf("media: encode thumbnail: %w", err)
	}
	res.data = buf.Bytes()
	return res, nil
}
