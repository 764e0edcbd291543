package sfutest

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Loss is an interceptor.Factory for the SFU's subscriber peer connections
// (sfu.Config.SubscriberInterceptors): it drops every Nth outgoing video RTP
// packet the first time it is sent, so only a retransmission (the SFU's
// answer to the subscriber's NACK) can deliver it, and counts the NACKs the
// subscriber sends and the retransmissions that follow.
type Loss struct {
	// Every is N: packets whose sequence number is 0 mod N are dropped on
	// first transmission (N=20: 5 %). 0 disables dropping.
	Every uint16

	dropped    atomic.Int64
	resent     atomic.Int64 // dropped packets sent again
	nacks      atomic.Int64 // NACK packets received from subscribers
	nackedSeqs atomic.Int64 // sequence numbers those NACKs named
}

// Dropped is how many packets were dropped on first transmission.
func (l *Loss) Dropped() int64 { return l.dropped.Load() }

// Resent is how many of those the SFU sent again.
func (l *Loss) Resent() int64 { return l.resent.Load() }

// NACKs is how many RTCP NACKs subscribers sent, and how many sequence
// numbers they asked for.
func (l *Loss) NACKs() (packets, seqs int64) { return l.nacks.Load(), l.nackedSeqs.Load() }

// NewInterceptor implements interceptor.Factory.
func (l *Loss) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &lossInterceptor{l: l}, nil
}

type lossInterceptor struct {
	interceptor.NoOp
	l *Loss
}

// BindLocalStream drops on video streams only: audio is not NACKed.
func (i *lossInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if i.l.Every == 0 || !strings.HasPrefix(strings.ToLower(info.MimeType), "video/") {
		return w
	}
	var mu sync.Mutex            // guards dropped
	dropped := map[uint16]bool{} // seq -> dropped, not yet resent
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		mu.Lock()
		drop := false
		if was, ok := dropped[h.SequenceNumber]; ok {
			if was {
				i.l.resent.Add(1)
				dropped[h.SequenceNumber] = false
			}
		} else if h.SequenceNumber%i.l.Every == 0 {
			dropped[h.SequenceNumber] = true
			drop = true
			// Forget entries a wrap-around away so the map stays small.
			delete(dropped, h.SequenceNumber+32768)
		}
		mu.Unlock()
		if drop {
			i.l.dropped.Add(1)
			return len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

// BindRTCPReader counts NACKs coming from the subscriber.
func (i *lossInterceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err != nil {
			return n, a, err
		}
		if pkts, perr := rtcp.Unmarshal(b[:n]); perr == nil {
			for _, p := range pkts {
				if nack, ok := p.(*rtcp.TransportLayerNack); ok {
					i.l.nacks.Add(1)
					for _, pair := range nack.Nacks {
						i.l.nackedSeqs.Add(int64(len(pair.PacketList())))
					}
				}
			}
		}
		return n, a, err
	})
}
