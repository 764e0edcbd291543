package bidi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/web/internal/bidi"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{`{"type":"undefined"}`, nil},
		{`{"type":"null"}`, nil},
		{`{"type":"string","value":"héllo"}`, "héllo"},
		{`{"type":"number","value":42.5}`, 42.5},
		{`{"type":"number","value":"Infinity"}`, math.Inf(1)},
		{`{"type":"number","value":"-Infinity"}`, math.Inf(-1)},
		{`{"type":"boolean","value":true}`, true},
		{`{"type":"bigint","value":"12345678901234567890"}`, "12345678901234567890"},
		{`{"type":"array","value":[{"type":"number","value":1},{"type":"string","value":"a"}]}`, []any{1.0, "a"}},
		{`{"type":"object","value":[["a",{"type":"number","value":1}],["b",{"type":"array","value":[]}]]}`,
			map[string]any{"a": 1.0, "b": []any{}}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var v bidi.RemoteValue
			if err := json.Unmarshal([]byte(tc.in), &v); err != nil {
				t.Fatal(err)
			}
			got, err := v.Decode()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
	for _, in := range []string{`{"type":"number","value":"NaN"}`, `{"type":"number","value":"-0"}`} {
		var v bidi.RemoteValue
		_ = json.Unmarshal([]byte(in), &v)
		got, err := v.Decode()
		f, ok := got.(float64)
		if err != nil || !ok || (in[len(in)-5:] == `NaN"}` && !math.IsNaN(f)) || (in[len(in)-4:] == `-0"}` && !math.Signbit(f)) {
			t.Errorf("%s: got %v, %v", in, got, err)
		}
	}
	for _, in := range []string{`{"type":"node","sharedId":"x"}`, `{"type":"function"}`, `{"type":"number","value":"many"}`} {
		var v bidi.RemoteValue
		_ = json.Unmarshal([]byte(in), &v)
		if got, err := v.Decode(); err == nil {
			t.Errorf("%s: decoded as %v, want an error", in, got)
		}
	}
}

func firefox(t *testing.T) string {
	t.Helper()
	p, err := bidi.LookPath()
	if err == nil {
		return p
	}
	if os.Getenv("PLEXUS_REQUIRE_BROWSER") == "1" || os.Getenv("CI") != "" {
		t.Fatalf("%v (run .ci/firefox.sh)", err)
	}
	t.Skipf("%v (run .ci/firefox.sh); set PLEXUS_REQUIRE_BROWSER=1 to fail instead", err)
	return ""
}

const testPage = `<!doctype html><title>bidi</title>
<style>body{margin:0;background:#00ff00} button{position:absolute;left:100px;top:100px;width:120px;height:40px}
input{position:absolute;left:100px;top:200px}</style>
<button id=b onclick="window.clicks = (window.clicks || 0) + 1">click</button>
<input id=i>
<script>window.record = {n: 3, s: 'x', list: [1, true, null]}; console.log('page loaded')</script>`

// TestFirefox drives a real headless Firefox against a local page.
func TestFirefox(t *testing.T) {
	path := firefox(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(testPage))
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var mu sync.Mutex
	var logs []string
	f, err := bidi.Launch(ctx, bidi.Options{Path: path, OnLog: func(_, level, text string) {
		mu.Lock()
		logs = append(logs, level+": "+text)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := f.NewTab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Navigate(ctx, srv.URL+"/"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		expr  string
		await bool
		want  any
	}{
		{`document.title`, false, "bidi"},
		{`1 + 2`, false, 3.0},
		{`document.getElementById('b') instanceof HTMLButtonElement`, false, true},
		{`window.record`, false, map[string]any{"n": 3.0, "s": "x", "list": []any{1.0, true, nil}}},
		{`new Promise(r => setTimeout(() => r('later'), 10))`, true, "later"},
		{`undefined`, false, nil},
	} {
		got, err := tab.Evaluate(ctx, tc.expr, tc.await)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.expr, got, tc.want)
		}
	}
	var se *bidi.ScriptError
	if _, err := tab.Evaluate(ctx, `null.x`, false); !errors.As(err, &se) {
		t.Errorf("a throwing expression: %v, want a ScriptError", err)
	}
	if _, err := tab.Evaluate(ctx, `Promise.reject(new Error('no'))`, true); !errors.As(err, &se) {
		t.Errorf("a rejected promise: %v, want a ScriptError", err)
	}

	// Real input: a click on the button, typing into the field.
	if err := tab.Click(ctx, 160, 120); err != nil {
		t.Fatal(err)
	}
	if got, err := tab.Evaluate(ctx, `window.clicks`, false); err != nil || got != 1.0 {
		t.Errorf("clicks after a click: %v, %v", got, err)
	}
	if _, err := tab.Evaluate(ctx, `document.getElementById('i').focus()`, false); err != nil {
		t.Fatal(err)
	}
	if err := tab.Type(ctx, "héllo 1"); err != nil {
		t.Fatal(err)
	}
	if got, err := tab.Evaluate(ctx, `document.getElementById('i').value`, false); err != nil || got != "héllo 1" {
		t.Errorf("typed %q, %v", got, err)
	}

	// The screenshot is the page: the viewport size set, green.
	if err := tab.SetViewport(ctx, 400, 300); err != nil {
		t.Fatal(err)
	}
	shot, err := tab.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 400 || b.Dy() != 300 {
		t.Errorf("screenshot %v, want 400x300", b)
	}
	if r, g, b, _ := img.At(10, 290).RGBA(); r>>8 > 10 || g>>8 < 245 || b>>8 > 10 {
		t.Errorf("screenshot pixel (%d,%d,%d), want the page's green", r>>8, g>>8, b>>8)
	}

	// A second tab is another user context: its own storage.
	if _, err := tab.Evaluate(ctx, `localStorage.setItem('who', 'first')`, false); err != nil {
		t.Fatal(err)
	}
	other, err := f.NewTab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Navigate(ctx, srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	if got, err := other.Evaluate(ctx, `localStorage.getItem('who')`, false); err != nil || got != nil {
		t.Errorf("the second tab sees the first's storage: %v, %v", got, err)
	}
	if err := other.Close(ctx); err != nil {
		t.Fatal(err)
	}

	if err := tab.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	// The load's and the reload's console message (events may trail the
	// command's reply a little).
	loaded := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, l := range logs {
			if l == "info: page loaded" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); loaded() < 2; {
		if time.Now().After(deadline) {
			mu.Lock()
			t.Errorf("console messages %q, want \"page loaded\" twice", logs)
			mu.Unlock()
			break
		}
		time.Sleep(20 * time.Millisecond) // polling for the events, with a deadline
	}
	f.Close()
	f.Close() // idempotent
}
