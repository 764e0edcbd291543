package turn

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needTool returns the path of one of coturn's programs. A missing tool
// fails the test under CI (CI=true), where .ci/coturn.sh installs it, and
// skips it elsewhere.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found: install coturn's tools with `bash .ci/coturn.sh` (Debian package coturn)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// uclientResult is what turnutils_uclient reports at the end of a run.
type uclientResult struct {
	sent, received, lost int
	out                  string
}

var (
	reTotalSend = regexp.MustCompile(`tot_send_msgs=(\d+)`)
	reTotalRecv = regexp.MustCompile(`tot_recv_msgs=(\d+)`)
	reLost      = regexp.MustCompile(`Total lost packets (\d+)`)
)

func lastInt(re *regexp.Regexp, s string) int {
	m := re.FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return -1
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// runUclient runs coturn's test client against addr with REST credentials
// minted from secret (-W) for user, in client-to-client mode (-y: the
// clients are each other's peers through their relays).
func runUclient(t testing.TB, uclient, host string, port int, secret []byte, extra ...string) uclientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"-y", "-c", "-u", "uclient", "-W", string(secret), "-p", strconv.Itoa(port)}, extra...)
	args = append(args, host)
	cmd := exec.CommandContext(ctx, uclient, args...)
	out, err := cmd.CombinedOutput()
	s := string(out)
	if err != nil {
		t.Fatalf("turnutils_uclient %s: %v\n%s", strings.Join(args, " "), err, tail(s))
	}
	return uclientResult{sent: lastInt(reTotalSend, s), received: lastInt(reTotalRecv, s), lost: lastInt(reLost, s), out: s}
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// TestCoturnClient has coturn's turnutils_uclient run against Plexus over
// UDP, TCP and TLS with TURN REST credentials; every message must come back.
func TestCoturnClient(t *testing.T) {
	uclient := needTool(t, "turnutils_uclient")
	s := startServer(t, func(c *Config, _ *Deps) {
		c.AllowPeers = loopbackAllowed // -y: the peers are the relays, on 127.0.0.1
	})
	for _, tt := range []struct {
		name  string
		port  int
		flags []string
	}{
		{"udp", portOf(s.UDPAddr()), nil},
		{"tcp", portOf(s.TCPAddr()), []string{"-t"}},
		{"tls", portOf(s.TLSAddr()), []string{"-t", "-S"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			flags := append([]string{"-m", "4", "-n", "50", "-l", "160", "-z", "5"}, tt.flags...)
			r := runUclient(t, uclient, "127.0.0.1", tt.port, testSecret, flags...)
			if r.sent <= 0 || r.received != r.sent || r.lost != 0 {
				t.Fatalf("sent %d, received %d, lost %d:\n%s", r.sent, r.received, r.lost, tail(r.out))
			}
			t.Logf("%s: %d messages relayed both ways, none lost", tt.name, r.received)
		})
	}
}
