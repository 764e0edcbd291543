package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/plexus-chat/plexus/web"
)

func serveMux(t *testing.T, cfg web.Config) *httptest.Server {
	t.Helper()
	w, err := web.New(cfg, web.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	w.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestServe(t *testing.T) {
	bundle := fstest.MapFS{
		"index.html":              {Data: []byte(`<!doctype html><script type="module" src="/assets/main-AB12.js"></script>`)},
		"assets/main-AB12.js":     {Data: []byte(`console.log("hi")`)},
		"assets/main-CD34.css":    {Data: []byte(`body{}`)},
		"assets/fonts/x-EF56.svg": {Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)},
	}
	srv := serveMux(t, web.Config{Assets: bundle})

	tests := []struct {
		path, status, ctype, cache, body string
	}{
		{"/", "200 OK", "text/html; charset=utf-8", "no-cache", "<!doctype html>"},
		{"/assets/main-AB12.js", "200 OK", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", `console.log`},
		{"/assets/main-CD34.css", "200 OK", "text/css; charset=utf-8", "public, max-age=31536000, immutable", "body{}"},
		{"/assets/fonts/x-EF56.svg", "200 OK", "image/svg+xml", "public, max-age=31536000, immutable", "<svg"},
		{"/assets/missing.js", "404 Not Found", "", "", ""},
		{"/index.html", "404 Not Found", "", "", ""},
		{"/_matrix/client/versions", "404 Not Found", "", "", ""},
		{"/room/abc", "404 Not Found", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			res, body := get(t, srv.URL+tc.path, nil)
			if res.Status != tc.status {
				t.Fatalf("status %s, want %s", res.Status, tc.status)
			}
			if tc.ctype == "" {
				return
			}
			if got := res.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if got := res.Header.Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control %q, want %q", got, tc.cache)
			}
			if !strings.HasPrefix(body, tc.body) {
				t.Errorf("body %q, want it to start with %q", body, tc.body)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
				t.Errorf("security headers missing: %v", res.Header)
			}
			// Revalidation by ETag answers 304 with no body.
			etag := res.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			res2, body2 := get(t, srv.URL+tc.path, map[string]string{"If-None-Match": etag})
			if res2.StatusCode != http.StatusNotModified || body2 != "" {
				t.Errorf("If-None-Match: status %d, body %q; want 304 and none", res2.StatusCode, body2)
			}
		})
	}
}

// A binary built before `make web` still runs; its / says what to do.
func TestNotBuilt(t *testing.T) {
	srv := serveMux(t, web.Config{Assets: fstest.MapFS{"PLACEHOLDER": {Data: []byte("x")}}})
	res, body := get(t, srv.URL+"/", nil)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "make web") {
		t.Fatalf("status %d, body %q; want 503 naming make web", res.StatusCode, body)
	}
	if res2, _ := get(t, srv.URL+"/assets/main.js", nil); res2.StatusCode != http.StatusNotFound {
		t.Fatalf("asset of a missing bundle: status %d, want 404", res2.StatusCode)
	}
}

// The embedded bundle is the one `make web` wrote: its index names
// assets that are there.
func TestEmbedded(t *testing.T) {
	w, err := web.New(web.Config{}, web.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Built() {
		t.Fatal("no web client embedded: run `make web` before the tests")
	}
	mux := http.NewServeMux()
	w.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, index := get(t, srv.URL+"/", nil)
	for _, part := range strings.Split(index, `"`) {
		if !strings.HasPrefix(part, "/assets/") {
			continue
		}
		if res, _ := get(t, srv.URL+part, nil); res.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", part, res.StatusCode)
		}
	}
	if !strings.Contains(index, "/assets/main-") {
		t.Errorf("index.html names no bundle: %s", index)
	}
}
