package turn

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// The figures of issue 5. Run them with
//
//	go test -run '^$' -bench . -benchtime 1x ./turn
//
// BenchmarkUclient runs coturn's turnutils_uclient against Plexus (in this
// process) and against coturn's turnserver (a child process started here),
// with the same workload, and reports for each: messages delivered end to
// end per second (each crosses two allocations: -y makes the clients each
// other's peers), the server's CPU seconds per million delivered, and the
// loss. UCLIENT_INTERVAL_MS (default 2) paces each session.

func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuOf reads a process's user+system CPU time from /proc.
func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start after ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 overall
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// startCoturn runs turnserver on loopback with the TURN REST secret; it is
// stopped (by its pid) at the end of the benchmark.
func startCoturn(b *testing.B, turnserver string, secret []byte) (port, pid int) {
	b.Helper()
	l, err := net.ListenPacket("udp4", "127.0.0.1:0") // find a free port
	if err != nil {
		b.Fatal(err)
	}
	port = l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	dir := b.TempDir()
	cmd := exec.Command(turnserver, "-n",
		"--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
		"--listening-port", strconv.Itoa(port), "--min-port", "45000", "--max-port", "49000",
		"--use-auth-secret", "--static-auth-secret", string(secret), "--realm", testRealm,
		"--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--no-stdout-log",
		"--log-file", filepath.Join(dir, "coturn.log"), "--simple-log",
		"--pidfile", filepath.Join(dir, "coturn.pid"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Ready once it answers a Binding request.
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _ = c.WriteTo(req.Raw, dst)
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := c.ReadFrom(make([]byte, 1500)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("turnserver did not start")
		}
	}
	return port, cmd.Process.Pid
}

func BenchmarkUclient(b *testing.B) {
	uclient := needTool(b, "turnutils_uclient")
	turnserver := needTool(b, "turnserver")
	interval := os.Getenv("UCLIENT_INTERVAL_MS")
	if interval == "" {
		interval = "2"
	}
	s := startServer(b, func(c *Config, d *Deps) {
		c.AllowPeers = loopbackAllowed
		c.TLSListen, c.TLSCertificate = "", nil
		c.UserQuota, c.TotalQuota, c.MaxBitrate = 0, 0, 0
		d.Logger = nil
	})
	coturnPort, coturnPid := startCoturn(b, turnserver, testSecret)
	servers := []struct {
		name string
		port int
		cpu  func() time.Duration
	}{
		{"plexus", portOf(s.UDPAddr()), cpuSelf},
		{"coturn", coturnPort, func() time.Duration { return cpuOf(coturnPid) }},
	}
	for _, size := range []int{160, 1200} {
		for _, allocs := range []int{50, 200} {
			for _, srv := range servers {
				b.Run(fmt.Sprintf("size=%d/allocs=%d/%s", size, allocs, srv.name), func(b *testing.B) {
					// -m is the number of sessions, each with one
					// allocation; 100,000 messages in all.
					msgs := 100_000 / allocs
					var delivered, lost, sent int
					var wall, cpu time.Duration
					for b.Loop() {
						cpu0, t0 := srv.cpu(), time.Now()
						r := runUclient(b, uclient, "127.0.0.1", srv.port, testSecret,
							"-m", strconv.Itoa(allocs), "-n", strconv.Itoa(msgs), "-l", strconv.Itoa(size), "-z", interval)
						wall += time.Since(t0)
						cpu += srv.cpu() - cpu0
						b.Logf("%s: sent %d received %d lost %d in %v, server CPU %v", srv.name, r.sent, r.received, r.lost, time.Since(t0), srv.cpu()-cpu0)
						delivered += r.received
						sent += r.sent
						lost += r.lost
					}
					b.ReportMetric(float64(delivered)/wall.Seconds(), "pkts/s")
					b.ReportMetric(cpu.Seconds()/(float64(delivered)/1e6), "cpu-s/Mpkt")
					b.ReportMetric(100*float64(lost)/float64(max(sent, 1)), "loss%")
					b.ReportMetric(0, "ns/op")
				})
			}
		}
	}
}

// BenchmarkAllocate measures allocations a second: each one is a fresh
// client's two round trips (the 401 that hands out the nonce, then the
// authenticated Allocate), released again so quotas never bind.
func BenchmarkAllocate(b *testing.B) {
	s := startServer(b, func(c *Config, d *Deps) {
		c.TLSListen, c.TLSCertificate = "", nil
		c.UserQuota, c.TotalQuota = 0, 0
		d.Logger = nil
	})
	user, pass := creds(testUser, time.Hour)
	start := time.Now()
	for b.Loop() {
		c := newRaw(b, s, "udp", user, pass)
		if _, code := c.allocate(); code != 0 {
			b.Fatalf("Allocate: %d", code)
		}
		if _, code := c.do(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}}); code != 0 {
			b.Fatalf("Refresh 0: %d", code)
		}
		c.conn.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "allocs/s")
}

// BenchmarkAllocationMemory measures the server's heap per live
// allocation, with a channel bound on each as a call would have.
func BenchmarkAllocationMemory(b *testing.B) {
	const n = 500
	s := startServer(b, func(c *Config, d *Deps) {
		c.TLSListen, c.TLSCertificate = "", nil
		c.UserQuota, c.TotalQuota = 0, 0
		c.AllowPeers = loopbackAllowed
		d.Logger = nil
	})
	echo := startEcho(b)
	user, pass := creds(testUser, time.Hour)
	for b.Loop() {
		clients := make([]*rawClient, n)
		for i := range clients { // sockets and nonces first: not the server's memory
			clients[i] = newRaw(b, s, "udp", user, pass)
			clients[i].do(stun.MethodBinding)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		for _, c := range clients {
			if _, code := c.allocate(); code != 0 {
				b.Fatalf("Allocate: %d", code)
			}
			if code := c.channelBind(0x4000, peerAttr{echo.addr().AddrPort().Addr(), uint16(echo.port())}); code != 0 {
				b.Fatalf("ChannelBind: %d", code)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/n, "bytes/alloc")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/alloc")
		for _, c := range clients {
			c.do(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}})
			c.conn.Close()
		}
		waitFor(b, "allocations to go", func() bool { return s.Allocations() == 0 })
	}
}
