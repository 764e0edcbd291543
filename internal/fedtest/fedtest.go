package fedtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/tlscert"
)

// Server is one Plexus server of a federation.
type Server struct {
	Name string
	// ClientURL is the base URL of the client API.
	ClientURL string
	// FedAddr is the host:port of the federation listener.
	FedAddr string
	// DataDir is the server's data folder.
	DataDir string

	fed  *Federation
	args []string
	dsn  string // PostgreSQL DSN; "" for SQLite in DataDir

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs bytes.Buffer
}

// Federation is a set of servers that know each other.
type Federation struct {
	t       testing.TB
	bin     string
	dir     string
	caFile  string
	Servers map[string]*Server
	order   []string
	resolve []string
}

// Options tune a federation.
type Options struct {
	// Postgres, if set, is a function returning a fresh database DSN
	// for each server (the PostgreSQL backend); nil uses SQLite.
	Postgres func(name string) string
	// Extra are additional NAME=HOST:PORT resolve entries and the PEM
	// certificates to trust for them.
	Extra    []string
	ExtraPEM [][]byte
	// Args are added to every server's command line.
	Args []string
	// ServerArgs are added to the named server's command line only.
	ServerArgs map[string][]string
	// NoRace builds the servers without the race detector even when the
	// tests run under it: for tests whose subject is elsewhere (a
	// browser), where an instrumented server only slows the run down.
	NoRace bool
}

// build is one build of the plexus binary, made once per test process.
type build struct {
	once sync.Once
	bin  string
	err  error
}

// builds holds the plain build and the race-instrumented one.
var builds [2]build

// binary builds plexus once per test process and mode (with the race
// detector when race is set).
func binary(t testing.TB, race bool) string {
	b := &builds[0]
	if race {
		b = &builds[1]
	}
	b.once.Do(func() { b.bin, b.err = buildPlexus(race) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// RemoveBinaries deletes the binaries built so far; a TestMain calls it
// after the tests ran.
func RemoveBinaries() {
	for i := range builds {
		if builds[i].bin != "" {
			os.RemoveAll(filepath.Dir(builds[i].bin))
		}
	}
}

// buildPlexus builds ./cmd/plexus into a new temporary folder.
func buildPlexus(race bool) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "plexus-fedtest-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "plexus")
	args := []string{"build", "-tags", "goolm"}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "-o", bin, "./cmd/plexus")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// freePort finds a free loopback port. The port is released before the
// server binds it; nothing else on this loopback takes ports meanwhile in
// practice, and a clash shows as a start failure, not a wrong result.
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// New prepares servers with the given names (not started).
func New(t testing.TB, opts Options, names ...string) *Federation {
	t.Helper()
	f := &Federation{t: t, bin: binary(t, raceEnabled && !opts.NoRace), dir: t.TempDir(), Servers: map[string]*Server{}}
	var pems [][]byte
	for _, name := range names {
		s := &Server{Name: name, fed: f, DataDir: filepath.Join(f.dir, name)}
		if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		cert, err := tlscert.Load(tlscert.Config{DataDir: s.DataDir, Hosts: []string{name}})
		if err != nil {
			t.Fatal(err)
		}
		pem, err := os.ReadFile(cert.CertPath)
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, pem)
		s.ClientURL = "http://" + freePort(t)
		s.FedAddr = freePort(t)
		f.Servers[name] = s
		f.order = append(f.order, name)
		f.resolve = append(f.resolve, name+"="+s.FedAddr)
	}
	f.resolve = append(f.resolve, opts.Extra...)
	pems = append(pems, opts.ExtraPEM...)
	f.caFile = filepath.Join(f.dir, "ca.pem")
	if err := os.WriteFile(f.caFile, bytes.Join(pems, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		s := f.Servers[name]
		args := []string{"serve",
			"--server-name", name,
			"--listen", strings.TrimPrefix(s.ClientURL, "http://"),
			"--federation-listen", s.FedAddr,
			"--data", s.DataDir,
			"--federation-ca", f.caFile,
			"--turn-listen", "",
			"--sfu-listen-ip", "127.0.0.1", "--sfu-udp-port", "0", "--sfu-tcp-port", "off",
			"--metrics-listen", "off",
			"--rate-limits=off",
			"--registration", "open",
			"--log-format", "json",
			"--log-level", "info",
		}
		for _, r := range f.resolve {
			args = append(args, "--federation-resolve", r)
		}
		if opts.Postgres != nil {
			s.dsn = opts.Postgres(name)
			args = append(args, "--db", s.dsn)
		}
		s.args = append(append(args, opts.Args...), opts.ServerArgs[name]...)
	}
	t.Cleanup(func() {
		for _, name := range f.order {
			f.Servers[name].Stop(t)
		}
		if t.Failed() {
			for _, name := range f.order {
				s := f.Servers[name]
				s.mu.Lock()
				t.Logf("---- %s log (tail) ----\n%s", name, tail(s.logs.String(), 60))
				s.mu.Unlock()
			}
		}
	})
	return f
}

// CAFile is the PEM file of every server's certificate.
func (f *Federation) CAFile() string { return f.caFile }

// Start starts every server and waits until each answers.
func (f *Federation) Start(t testing.TB) {
	for _, name := range f.order {
		f.Servers[name].Start(t)
	}
}

// Start starts the server (again) and waits for its client API.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		t.Fatalf("%s already running", s.Name)
	}
	cmd := exec.Command(s.fed.bin, s.args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.mu.Unlock()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		t.Fatal(err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.logs.Write(sc.Bytes())
			s.logs.WriteByte('\n')
			s.mu.Unlock()
		}
		_ = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(s.ClientURL + "/_matrix/client/versions")
		if err == nil {
			res.Body.Close()
			if s.HasLog("federation listening") {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("%s exited while starting:\n%s", s.Name, tail(s.Logs(), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start: %v", s.Name, err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the listener, with a deadline
	}
}

// Stop stops the server with SIGTERM and waits for it to exit; it does
// nothing if the server is not running.
func (s *Server) Stop(t testing.TB) {
	cmd, done := s.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop within 30s of SIGTERM", s.Name)
	}
}

// Kill stops the server with SIGKILL: no orderly shutdown, as a crash.
func (s *Server) Kill(t testing.TB) {
	cmd, done := s.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// take hands over the running process, if any, to the one stopping it.
func (s *Server) take() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := s.cmd
	s.cmd = nil
	return cmd, s.done
}

// Logs returns everything the server logged so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// HasLog reports whether a log record with this msg was written.
func (s *Server) HasLog(msg string) bool {
	needle, _ := json.Marshal(msg)
	return strings.Contains(s.Logs(), `"msg":`+string(needle))
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s (last error: %v)", d, what, lastErr)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
