package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/signing"
)

// runMainEnv makes the test binary act as plexus itself, so the end-to-end
// test runs the real main (flags, signals, exit code) in a subprocess
// without a separate go build, and under -race when the tests are.
const runMainEnv = "PLEXUS_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestRun(t *testing.T) {
	dataFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(dataFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{name: "no command", wantCode: exitUsage, wantStderr: []string{"Usage: plexus <command>", "serve", "version"}},
		{name: "help", args: []string{"help"}, wantCode: exitOK, wantStdout: []string{"Usage: plexus <command>"}},
		{name: "--help", args: []string{"--help"}, wantCode: exitOK, wantStdout: []string{"Usage: plexus <command>"}},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: exitUsage, wantStderr: []string{`unknown command "frobnicate"`}},
		{
			name: "version", args: []string{"version"}, wantCode: exitOK,
			wantStdout: []string{fmt.Sprintf("plexus dev %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)},
		},
		{name: "--version", args: []string{"--version"}, wantCode: exitOK, wantStdout: []string{"plexus dev go"}},
		{name: "version with arguments", args: []string{"version", "x"}, wantCode: exitUsage},
		{name: "serve help", args: []string{"serve", "-h"}, wantCode: exitOK, wantStdout: []string{"--server-name", "[metrics_listen]"}},
		{
			name:     "every config problem at once",
			args:     []string{"serve", "--server-name", "bad_name", "--listen", "nowhere", "--log-level", "loud"},
			wantCode: exitUsage,
			wantStderr: []string{
				"plexus serve: invalid configuration:\n",
				"\n  --server-name \"bad_name\": ",
				"\n  --listen \"nowhere\": ",
				"\n  --log-level \"loud\": ",
			},
		},
		{
			name:     "data folder unusable",
			args:     []string{"serve", "--listen", "127.0.0.1:0", "--turn-listen", "127.0.0.1:0", "--sfu-listen-ip", "127.0.0.1", "--sfu-udp-port", "0", "--sfu-tcp-port", "0", "--federation-listen", "127.0.0.1:0", "--data", dataFile},
			wantCode: exitFailure, wantStderr: []string{"creating data folder"},
		},
		{
			name:     "port in use",
			args:     []string{"serve", "--listen", taken.Addr().String(), "--turn-listen", "127.0.0.1:0", "--sfu-listen-ip", "127.0.0.1", "--sfu-udp-port", "0", "--sfu-tcp-port", "0", "--federation-listen", "127.0.0.1:0", "--data", t.TempDir()},
			wantCode: exitFailure, wantStderr: []string{"starting http: server: listening on"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), stdio{&stdout, &stderr}, tt.args)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, &stdout, &stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, &stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, &stderr)
				}
			}
		})
	}
}

// process is a plexus serve subprocess whose JSON log is parsed as it runs.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done

	mu   sync.Mutex // guards logs
	logs []map[string]any
}

func startPlexus(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				rec = map[string]any{"msg": "unparsed: " + sc.Text()}
			}
			p.mu.Lock()
			p.logs = append(p.logs, rec)
			p.mu.Unlock()
		}
	}()
	go func() {
		<-scanned // Wait closes the pipe; read it to the end first
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.mu.Lock()
			for _, l := range p.logs {
				t.Logf("plexus log: %v", l)
			}
			p.mu.Unlock()
		}
	})
	return p
}

// waitLog waits for a log record with msg and returns it.
func (p *process) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	var found map[string]any
	waitFor(t, "log "+msg, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.logs {
			if l["msg"] == msg {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// stop signals the process and waits for it to exit, returning its code.
func (p *process) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("plexus did not exit after the signal")
	}
	return p.cmd.ProcessState.ExitCode()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// TestServeEndToEnd runs plexus serve twice on one data folder: the first
// run creates the key, both serve the API and exit 0 on a signal, and the
// second serves the same key.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	const serverName = "plexus.test:8448"

	type served struct {
		keyID string
		pub   ed25519.PublicKey
	}
	runOnce := func(sig os.Signal) served {
		p := startPlexus(t, "--listen", "127.0.0.1:0", "--turn-listen", "127.0.0.1:0", "--sfu-listen-ip", "127.0.0.1", "--sfu-udp-port", "0", "--sfu-tcp-port", "0", "--federation-listen", "127.0.0.1:0", "--data", dataDir, "--server-name", serverName)
		addr, _ := p.waitLog(t, "listening")["addr"].(string)
		if addr == "" {
			t.Fatal("listening log has no addr")
		}
		base := "http://" + addr

		// The log says listening only once bound, but poll anyway: that is
		// what an operator's health check does.
		waitFor(t, "/_matrix/client/versions", func() bool {
			res, err := http.Get(base + "/_matrix/client/versions")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})

		st, err := os.Stat(filepath.Join(dataDir, "signing.key"))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != 0o600 {
			t.Errorf("signing.key mode = %04o, want 0600", got)
		}

		if code, body := get(t, base+"/metrics"); code != 200 || !bytes.Contains(body, []byte("plexus_http_requests_total")) {
			t.Errorf("/metrics: %d", code)
		}

		code, body := get(t, base+"/_matrix/key/v2/server")
		if code != 200 {
			t.Fatalf("key endpoint: %d %s", code, body)
		}
		var keys struct {
			ServerName string                       `json:"server_name"`
			VerifyKeys map[string]map[string]string `json:"verify_keys"`
		}
		if err := json.Unmarshal(body, &keys); err != nil {
			t.Fatal(err)
		}
		if keys.ServerName != serverName || len(keys.VerifyKeys) != 1 {
			t.Fatalf("key response: %s", body)
		}
		var s served
		for id, k := range keys.VerifyKeys {
			s.keyID = id
			s.pub, _ = base64.RawStdEncoding.DecodeString(k["key"])
		}
		if err := signing.VerifyJSON(body, serverName, s.keyID, s.pub); err != nil {
			t.Errorf("key response does not verify: %v", err)
		}

		if code := p.stop(t, sig); code != 0 {
			t.Errorf("exit code after %v = %d, want 0", sig, code)
		}
		p.waitLog(t, "plexus stopped")
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Error("port still open after exit")
		}
		return s
	}

	first := runOnce(syscall.SIGTERM)
	st, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o700 {
		t.Errorf("data folder mode = %04o, want 0700", got)
	}
	second := runOnce(os.Interrupt)
	if second.keyID != first.keyID || !second.pub.Equal(first.pub) {
		t.Errorf("restart served key %s, first run served %s", second.keyID, first.keyID)
	}
}
