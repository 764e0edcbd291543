package turn

import (
	"runtime"
	"testing"
)

// TestPortable runs the relaying tests again with the UDP sockets on Go's
// own networking (package dgram's portable path), which is what systems
// without its event loop run. No test of this package is parallel, so
// the switch holds for exactly these.
func TestPortable(t *testing.T) {
	portableSockets = true
	t.Cleanup(func() { portableSockets = false })
	if s := startServer(t, nil); s.loop != nil {
		t.Fatal("portableSockets set, but an event loop serves")
	}
	for _, tt := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"RelayEcho", TestRelayEcho},
		{"PeerPolicy", TestPeerPolicy},
		{"MaxLifetimeAndBandwidth", TestMaxLifetimeAndBandwidth},
		{"Floods", TestFloods},
		{"CloseWaits", TestCloseWaits},
	} {
		t.Run(tt.name, tt.f)
	}
}

// TestLoopServes checks that on Linux the event loop serves by default,
// so that the other tests cover it and TestPortable the portable path.
func TestLoopServes(t *testing.T) {
	if s := startServer(t, nil); runtime.GOOS == "linux" && s.loop == nil {
		t.Fatal("no event loop serves on Linux")
	}
}
