package media

import (
	"strings"
	"testing"
)

func TestContentDisposition(t *testing.T) {
	tests := []struct {
		ct, filename, want string
	}{
		{"image/png", "", "inline"},
		{"IMAGE/PNG", "", "inline"},
		{"text/html", "", "attachment"},
		{"application/pdf", "a.pdf", "attachment; filename=a.pdf"},
		{"image/svg+xml", "x.svg", "attachment; filename=x.svg"},
		{"text/plain; charset=utf-8", "a b.txt", `inline; filename="a b.txt"`},
		{"text/plain", `q"uote\.txt`, `inline; filename="q\"uote\\.txt"`},
		{"audio/ogg", "été.ogg", "inline; filename*=utf-8''%C3%A9t%C3%A9.ogg"},
		{"application/octet-stream", "a\nb", "attachment; filename*=utf-8''a%0Ab"},
		{"garbage", "x", "attachment; filename=x"},
	}
	for _, tc := range tests {
		if got := contentDisposition(tc.ct, tc.filename); got != tc.want {
			t.Errorf("contentDisposition(%q, %q) = %q, want %q", tc.ct, tc.filename, got, tc.want)
		}
	}
}

func TestServedContentType(t *testing.T) {
	tests := []struct{ in, want string }{
		{"text/plain", "text/plain; charset=utf-8"},
		{"text/csv; charset=latin1", "text/csv; charset=latin1"},
		{"application/json", "application/json; charset=utf-8"},
		{"image/png", "image/png"},
		{"", "application/octet-stream"},
		{"%%%", "application/octet-stream"},
	}
	for _, tc := range tests {
		if got := servedContentType(tc.in); got != tc.want {
			t.Errorf("servedContentType(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for in, want := range map[string]string{
		"":                          "application/octet-stream",
		"image/png":                 "image/png",
		"text/plain; charset=utf-8": "text/plain; charset=utf-8",
		"a/b/c":                     "application/octet-stream",
		"text/plain\xff":            "application/octet-stream",
		strings.Repeat("a", 300):    "application/octet-stream",
	} {
		if got := normalizeContentType(in); got != want {
			t.Errorf("normalizeContentType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMediaIDs(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := newMediaID()
		if len(id) != mediaIDLen || !validMediaID(id) || seen[id] {
			t.Fatalf("bad or repeated media ID %q", id)
		}
		seen[id] = true
	}
	for id, want := range map[string]bool{
		"abc_DEF-123": true, "": false, "a.b": false, "a/b": false, "..": false, "a%2F": false, "é": false,
		strings.Repeat("a", 256): false,
	} {
		if got := validMediaID(id); got != want {
			t.Errorf("validMediaID(%q) = %v", id, got)
		}
	}
}
