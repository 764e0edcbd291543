package bidi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// QuietPrefs keep a headless Firefox from reaching out or showing
// anything on its own: no first-run or what's-new pages, no default
// browser check, no updates, no telemetry or studies. (Firefox applies
// its recommended automation prefs, remote.prefs.recommended, itself.)
var QuietPrefs = map[string]any{
	"browser.shell.checkDefaultBrowser":                 false,
	"browser.startup.homepage_override.mstone":          "ignore",
	"browser.startup.page":                              0,
	"browser.aboutwelcome.enabled":                      false,
	"browser.tabs.warnOnClose":                          false,
	"app.update.disabledForTesting":                     true,
	"app.normandy.enabled":                              false,
	"datareporting.policy.dataSubmissionEnabled":        false,
	"datareporting.healthreport.uploadEnabled":          false,
	"toolkit.telemetry.reportingpolicy.firstRun":        false,
	"toolkit.telemetry.enabled":                         false,
	"browser.newtabpage.enabled":                        false,
	"extensions.update.enabled":                         false,
	"browser.safebrowsing.malware.enabled":              false,
	"browser.safebrowsing.phishing.enabled":             false,
	"network.captive-portal-service.enabled":            false,
	"network.connectivity-service.enabled":              false,
	"browser.newtabpage.activity-stream.feeds.topsites": false,
}

// LookPath finds Firefox on the PATH: firefox-esr (Debian's) or firefox.
func LookPath() (string, error) {
	for _, name := range []string{"firefox-esr", "firefox"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("firefox is not installed")
}

// Options configure Launch.
type Options struct {
	// Path is the Firefox executable.
	Path string
	// Prefs are written to the fresh profile's user.js, over QuietPrefs.
	Prefs map[string]any
	// Env is added to Firefox's environment (after this process's).
	Env []string
	// Width and Height size the headless window (default 1100x760).
	Width, Height int
	// OnLog, if set, receives console messages (log.entryAdded) of every
	// tab: the context ID, level and text. Called from the reader
	// goroutine; it must not block.
	OnLog func(context, level, text string)
}

// Firefox is one running headless Firefox with a BiDi session.
type Firefox struct {
	conn    *Conn
	cmd     *exec.Cmd
	profile string
	exited  chan struct{} // closed when the process has been waited for

	mu     sync.Mutex // guards stderr and closed
	stderr []string   // the last lines Firefox printed
	closed bool
}

var listening = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

// Launch starts Firefox headless with a fresh profile and a BiDi
// session. Close stops it.
func Launch(ctx context.Context, opts Options) (*Firefox, error) {
	if opts.Width == 0 {
		opts.Width, opts.Height = 1100, 760
	}
	profile, err := os.MkdirTemp("", "plexus-firefox-")
	if err != nil {
		return nil, err
	}
	prefs := maps.Clone(QuietPrefs)
	maps.Copy(prefs, opts.Prefs)
	if err := writeUserJS(filepath.Join(profile, "user.js"), prefs); err != nil {
		os.RemoveAll(profile)
		return nil, err
	}
	f := &Firefox{profile: profile, exited: make(chan struct{})}
	// Port 0: Firefox picks a free port and prints the address.
	f.cmd = exec.Command(opts.Path, "--headless", "--no-remote", "--profile", profile,
		"--remote-debugging-port", "0", "--width", fmt.Sprint(opts.Width), "--height", fmt.Sprint(opts.Height), "about:blank")
	f.cmd.Env = append(append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1"), opts.Env...)
	stderr, err := f.cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(profile)
		return nil, err
	}
	if err := f.cmd.Start(); err != nil {
		os.RemoveAll(profile)
		return nil, fmt.Errorf("bidi: starting firefox: %w", err)
	}
	addr := make(chan string, 1)
	go f.readStderr(stderr, addr)
	go func() {
		_ = f.cmd.Wait()
		close(f.exited)
	}()

	var url string
	select {
	case url = <-addr:
	case <-f.exited:
		err = errors.New("firefox exited before listening")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		f.conn, err = Dial(ctx, url+"/session", func(method string, params json.RawMessage) {
			if method == "log.entryAdded" && opts.OnLog != nil {
				var e struct {
					Level  string `json:"level"`
					Text   string `json:"text"`
					Source struct {
						Context string `json:"context"`
					} `json:"source"`
				}
				if json.Unmarshal(params, &e) == nil {
					opts.OnLog(e.Source.Context, e.Level, e.Text)
				}
			}
		})
	}
	if err == nil {
		err = f.conn.Call(ctx, "session.new", map[string]any{"capabilities": map[string]any{}}, nil)
	}
	if err == nil && opts.OnLog != nil {
		err = f.conn.Call(ctx, "session.subscribe", map[string]any{"events": []string{"log.entryAdded"}}, nil)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("bidi: %w\n%s", err, f.Stderr())
	}
	return f, nil
}

func writeUserJS(path string, prefs map[string]any) error {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(prefs)) {
		v, err := json.Marshal(prefs[k])
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "user_pref(%q, %s);\n", k, v)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// readStderr keeps Firefox's last lines for diagnostics and reports the
// BiDi address once it appears.
func (f *Firefox) readStderr(r io.Reader, addr chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		if m := listening.FindStringSubmatch(line); m != nil && !sent {
			addr <- m[1] // buffered
			sent = true
		}
		f.mu.Lock()
		f.stderr = append(f.stderr, line)
		if len(f.stderr) > 200 {
			f.stderr = f.stderr[len(f.stderr)-200:]
		}
		f.mu.Unlock()
	}
}

// Stderr is the last lines Firefox printed.
func (f *Firefox) Stderr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.stderr, "\n")
}

// Conn is the session's connection, for commands this package does not wrap.
func (f *Firefox) Conn() *Conn { return f.conn }

// Close ends the browser: browser.close (which ends the session and lets
// Firefox shut its content processes down), then, if it has not exited
// within 10 seconds, a kill by pid. It waits for the exit and removes the
// profile. Idempotent.
func (f *Firefox) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.mu.Unlock()
	grace := 10 * time.Second
	if f.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = f.conn.Call(ctx, "browser.close", nil, nil) // the reply may not come before the socket closes
		cancel()
	} else {
		grace = 0 // no session to close it through
	}
	select {
	case <-f.exited:
	case <-time.After(grace):
		_ = f.cmd.Process.Kill()
		<-f.exited
	}
	if f.conn != nil {
		f.conn.Close()
	}
	os.RemoveAll(f.profile)
}
