package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/web/internal/bidi"
)

// The browser tests run a real `plexus serve` (built once per test
// process) and real headless Chromium, and drive the web client as a
// person would: by its labelled controls. Screenshots of each step go to
// testdata/artifacts/<test>/ (gitignored).

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// binary builds plexus once. Without -race even under `go test -race`:
// the server's own packages run under the race detector in their tests;
// here the browser is the subject, and a race-instrumented server would
// only slow the calls down on a shared 2-core machine.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if _, err := os.Stat(filepath.Join("dist", "index.html")); err != nil {
			buildErr = fmt.Errorf("the web client is not built (%v): run `make web` first", err)
			return
		}
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "plexus-webtest-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "plexus")
		cmd := exec.Command("go", "build", "-tags", "goolm", "-o", buildBin, "./cmd/plexus")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildBin != "" {
		os.RemoveAll(filepath.Dir(buildBin))
	}
	fedtest.RemoveBinaries()
	os.Exit(code)
}

// server is one running `plexus serve`.
type server struct {
	URL        string
	ServerName string
	cmd        *exec.Cmd
	done       chan struct{}
	mu         sync.Mutex   // guards logs
	logs       bytes.Buffer // the server's stderr
}

func freeAddr(t testing.TB, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs plexus on loopback with its TURN relay, which may
// relay to loopback peers: on one machine both browsers' relayed
// addresses are loopback ones.
func startServer(t *testing.T) *server {
	t.Helper()
	s, _ := startServerFlags(t)
	return s
}

// startSFUServer starts plexus with its SFU on loopback (ephemeral ports).
func startSFUServer(t *testing.T) *server {
	t.Helper()
	s, _ := startServerFlags(t, "--sfu=on", "--sfu-listen-ip", "127.0.0.1", "--sfu-udp-port", "0", "--sfu-tcp-port", "0")
	return s
}

// startServerFlags runs plexus as startServer does, with flags added
// after startServer's (a repeated flag's last value wins), and returns
// it with its data folder.
//
// The ports are found free and then closed for plexus to bind, so another
// process may take one in between: a start that fails on an address in
// use is tried again with new ports.
func startServerFlags(t *testing.T, flags ...string) (*server, string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, data, inUse := tryStartServer(t, flags)
		if !inUse {
			return s, data
		}
		if attempt == 3 {
			t.Fatalf("plexus could not bind its ports three times:\n%s", tail(s.logText(), 40))
		}
		t.Logf("plexus found a port taken; starting again with new ports")
	}
}

// tryStartServer starts plexus once; inUse reports that it exited because
// one of its addresses was taken (any other failure is fatal).
func tryStartServer(t *testing.T, flags []string) (s *server, data string, inUse bool) {
	t.Helper()
	bin := binary(t)
	listen := freeAddr(t, "tcp")
	data = t.TempDir()
	s = &server{URL: "http://" + listen, ServerName: "plexus.test", done: make(chan struct{})}
	args := []string{"serve",
		"--server-name", s.ServerName,
		"--listen", listen,
		"--data", data,
		"--federation-listen", "",
		"--turn-listen", freeAddr(t, "udp"),
		"--turn-allow-peer", "127.0.0.1/32",
		"--sfu=off",
		"--metrics-listen", "off",
		"--rate-limits=off",
		"--registration", "open",
		"--log-level", "info",
	}
	s.cmd = exec.Command(bin, append(args, flags...)...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.logs.Write(sc.Bytes())
			s.logs.WriteByte('\n')
			s.mu.Unlock()
		}
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("---- plexus log (tail) ----\n%s", tail(s.logText(), 60))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(s.URL + "/_matrix/client/versions")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, data, false
			}
		}
		select {
		case <-s.done:
			if strings.Contains(s.logText(), "address already in use") {
				return s, data, true
			}
			t.Fatalf("plexus exited while starting:\n%s", tail(s.logText(), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("plexus did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the listener, with a deadline
	}
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// login logs a user in over the Client-Server API (for set-up the test
// does not drive through a browser) and returns the access token.
func (s *server) login(t *testing.T, user, password string) string {
	t.Helper()
	body := fmt.Sprintf(`{"type":"m.login.password","identifier":{"type":"m.id.user","user":%q},"password":%q}`, user, password)
	res, err := http.Post(s.URL+"/_matrix/client/v3/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || out.AccessToken == "" {
		t.Fatalf("login %s: status %d, %v", user, res.StatusCode, err)
	}
	return out.AccessToken
}

// send sends a text message over the Client-Server API.
func (s *server) send(t *testing.T, token, roomID, txn, text string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": text})
	apiPut(t, s.URL+"/_matrix/client/v3/rooms/"+roomID+"/send/m.room.message/"+txn, token, bytes.NewReader(body), "send")
}

// apiDo makes an HTTP request to the server's API with the access token
// as its bearer and returns the answer, whatever its status; the caller
// closes the body.
func apiDo(t *testing.T, method, url, token string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// apiPut PUTs the body to the url with the access token, and fails the
// test (naming the request by what) unless the answer is 200 OK.
func apiPut(t *testing.T, url, token string, body io.Reader, what string) {
	t.Helper()
	res := apiDo(t, http.MethodPut, url, token, body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d", what, res.StatusCode)
	}
}

// browser is one headless Chromium with fake camera and microphone.
type browser struct {
	ctx context.Context
}

// chromiumPath finds Chromium; without it the test skips, except where
// a browser is required (CI), where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	return browserPath(t, "chromium", ".ci/chromium.sh", "chromium", "chromium-browser", "google-chrome")
}

// browserPath finds the first of the executables on the PATH; without
// any the test skips, except where a browser is required (CI), where it
// fails. install names the script that installs the browser.
func browserPath(t *testing.T, browser, install string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PLEXUS_REQUIRE_BROWSER") == "1" || os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (run %s)", browser, install)
	}
	t.Skipf("%s is not installed (run %s); set PLEXUS_REQUIRE_BROWSER=1 to fail instead", browser, install)
	return ""
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.WindowSize(1100, 760),
		// Fake camera (a test pattern) and microphone (a beep), granted
		// without a prompt.
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		// ICE on the loopback interface, and host candidates as plain
		// addresses (no mDNS names, which need multicast).
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return &browser{ctx: ctx}
}

// page is one user's tab in a browser context of its own (its own
// cookies and storage, as another person's browser would have): in
// Chromium, driven through ctx by chromedp, or in Firefox, driven through
// ff by WebDriver BiDi (firefox_test.go). The helpers that evaluate,
// wait, click, type and take screenshots work on either; do takes
// chromedp actions and so is Chromium's only.
type page struct {
	t     *testing.T
	name  string
	ctx   context.Context
	ff    *bidi.Tab  // nil in Chromium
	dir   string     // screenshots
	shots *int       // shared step counter of the test
	mu    sync.Mutex // guards log, appended to by the console reader
	log   []string   // console messages
}

// logConsole records a console message of the page.
func (p *page) logConsole(msg string) {
	p.mu.Lock()
	p.log = append(p.log, msg)
	p.mu.Unlock()
}

// printConsole logs the page's console messages into a failed test's output.
func (p *page) printConsole() {
	if !p.t.Failed() {
		return
	}
	p.mu.Lock()
	p.t.Logf("---- %s's console ----\n%s", p.name, strings.Join(p.log, "\n"))
	p.mu.Unlock()
}

func (b *browser) newPage(t *testing.T, name string, shots *int) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab for %s: %v", name, err)
	}
	p := &page{t: t, name: name, ctx: ctx, dir: artifactDir(t), shots: shots}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			p.logConsole(m.String())
		}
	}()
	t.Cleanup(func() {
		p.printConsole()
		cancel()
	})
	return p
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// artifactDir is the test's screenshot folder, testdata/artifacts/<test
// name> (gitignored; clearArtifacts empties it when a test starts).
//
// With -artifacts (go test -artifacts -outputdir DIR ./web/) they go to
// the test's own artifact folder under DIR (testing.T.ArtifactDir);
// otherwise to testdata/artifacts/<test>, kept to be looked at.
func artifactDir(t *testing.T) string {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	return filepath.Join("testdata", "artifacts", unsafeName.ReplaceAllString(t.Name(), "_"))
}

// do runs browser actions with a deadline, failing the test on error.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if p.ff != nil {
		p.t.Fatalf("%s: %s: chromedp actions in Firefox", p.name, what)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.shot("failed-" + what)
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// waitJS waits until the JavaScript expression is truthy.
func (p *page) waitJS(what, expr string, timeout time.Duration) {
	p.t.Helper()
	if p.ff != nil {
		p.pollJS(what, expr, timeout)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		p.shot("failed-" + what)
		p.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
}

// pollTrue evaluates expr until it is truthy or timeout passes; it
// reports whether it became truthy and, if not, the last evaluation
// error (an expression may throw while a page loads).
func pollTrue(p *page, expr string, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := evaluate[bool](p, "!!("+expr+")", false)
		if err == nil && ok {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, err
		}
		<-tick.C // the poll interval of a wait with a deadline
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	return mustEvaluate[T](p, expr, false)
}

// evalAsync evaluates a JavaScript expression that yields a promise.
func evalAsync[T any](p *page, expr string) T {
	p.t.Helper()
	return mustEvaluate[T](p, expr, true)
}

func mustEvaluate[T any](p *page, expr string, await bool) T {
	p.t.Helper()
	v, err := evaluate[T](p, expr, await)
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, expr, err)
	}
	return v
}

// evaluate evaluates a JavaScript expression (awaiting the promise it
// yields, with await) in either browser, within 15 seconds.
func evaluate[T any](p *page, expr string, await bool) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	if p.ff != nil {
		return bidiEvaluate[T](ctx, p.ff, expr, await)
	}
	if await {
		return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	}
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// click clicks the element the CSS selector finds, once it is there.
func (p *page) click(what, css string) {
	p.t.Helper()
	if p.ff == nil {
		p.do(what, chromedp.Click(chromedp.CSS(css)))
		return
	}
	p.bidiClick(what, css)
}

// typeInto types text into the element the CSS selector finds, as key
// presses, appending to what it holds.
func (p *page) typeInto(what, css, text string) {
	p.t.Helper()
	if p.ff == nil {
		p.do(what, chromedp.SendKeys(chromedp.CSS(css), text))
		return
	}
	p.bidiType(what, css, text)
}

// open loads the URL and waits until the element the CSS selector finds is shown.
func (p *page) open(url, css string) {
	p.t.Helper()
	if p.ff == nil {
		p.do("open "+url, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(css)))
		return
	}
	p.bidiOpen(url, css)
}

// shot saves a screenshot of the tab as NN-step-user.png.
func (p *page) shot(step string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	var png []byte
	var err error
	if p.ff != nil {
		png, err = p.ff.Screenshot(ctx)
	} else {
		png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	}
	if err != nil {
		p.t.Logf("%s: screenshot %s: %v", p.name, step, err)
		return
	}
	*p.shots++
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	name := filepath.Join(p.dir, fmt.Sprintf("%02d-%s-%s.png", *p.shots, unsafeName.ReplaceAllString(step, "-"), p.name))
	if err := os.WriteFile(name, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// js quotes a Go string as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// register creates the account through the sign-in screen.
func (p *page) register(s *server, user, password string) {
	p.t.Helper()
	p.open(s.URL+"/", "#login-user")
	p.typeInto("fill in the user name", "#login-user", user)
	p.typeInto("fill in the password", "#login-pass", password)
	p.shot("sign-in")
	p.click("register", "#register-submit")
	p.waitJS("signed in", `document.getElementById('me')?.textContent === `+js("@"+user+":"+s.ServerName), 20*time.Second)
	p.waitJS("realtime connection", `document.getElementById('conn-status')?.textContent === 'online'`, 20*time.Second)
}

// clearArtifacts empties the test's screenshot folder, so that what is
// there after a run is that run's.
func clearArtifacts(t *testing.T) {
	dir := artifactDir(t)
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}
