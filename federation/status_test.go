package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
)

// TestStatus: the operator's view of the outbound queue follows a
// destination that takes our transactions, then one that refuses them
// and so has events queued, a transaction in flight and a backoff.
func TestStatus(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, envOptions{}, "hs2.test")
		hs2 := e.peers["hs2.test"]
		status := func() (*Status, DestinationStatus) {
			t.Helper()
			v, err := e.fed.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st := v.(*Status)
			for _, d := range st.Destinations {
				if d.Destination == "hs2.test" {
					return st, d
				}
			}
			return st, DestinationStatus{}
		}

		before := time.Now().UnixMilli()
		e.append("m.room.message", nil, `{"msgtype":"m.text","body":"delivered"}`)
		eventually(t, 10*time.Second, "a delivery noted", func() bool {
			_, d := status()
			return d.LastSuccess >= before && d.PendingPDUs == 0
		})
		st, d := status()
		if d.Failures != 0 || d.BackingOff || d.LastFailure != 0 || d.InFlight != "" || st.PendingPDUs != 0 || st.BackingOff != 0 {
			t.Fatalf("after a delivery: %+v %+v", st, d)
		}

		hs2.setOverride(func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/") {
				server.WriteError(w, mxerr.New(http.StatusInternalServerError, "M_UNKNOWN", "disk full"))
				return true
			}
			return false
		})
		e.append("m.room.message", nil, `{"msgtype":"m.text","body":"refused"}`)
		e.append("m.room.message", nil, `{"msgtype":"m.text","body":"queued"}`)
		eventually(t, 10*time.Second, "a failure noted", func() bool {
			_, d := status()
			return d.Failures > 0
		})
		st, d = status()
		if d.PendingPDUs < 1 || d.InFlight == "" || !d.BackingOff || d.RetryAt <= time.Now().UnixMilli() || !d.CatchingUp ||
			d.LastFailure < d.LastSuccess || !strings.Contains(d.LastError, "disk full") {
			t.Errorf("refusing destination: %+v", d)
		}
		if st.PendingPDUs != d.PendingPDUs || st.BackingOff != 1 || st.More != 0 {
			t.Errorf("totals %+v", st)
		}
		// The numbers the history samples are at the top level.
		b, _ := json.Marshal(st)
		var top map[string]any
		if err := json.Unmarshal(b, &top); err != nil {
			t.Fatal(err)
		}
		if top["pending_pdus"] != float64(st.PendingPDUs) || top["destinations_backing_off"] != float64(1) {
			t.Errorf("JSON form %s", b)
		}
	})
}
