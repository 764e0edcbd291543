package signal

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ErrClosed is returned by Send on a closed connection.
var ErrClosed = errors.New("signal: connection closed")

// ConnConfig tunes one connection.
type ConnConfig struct {
	// QueueLen bounds the frames waiting for the writer; a client that
	// lets more pile up is closed (default 512).
	QueueLen int
	// QueueBytes bounds the bytes of those frames (default 16 MiB): a
	// frame count alone lets a few large messages (participant updates
	// of a busy room) hold unbounded memory for a client that does not
	// read.
	QueueBytes int
	// PingInterval is how often the writer sends a WebSocket ping
	// (default 10s); PingTimeout how long the reader waits for any frame
	// or pong (default 20s).
	PingInterval, PingTimeout time.Duration
	// WriteTimeout bounds one frame's write (default 10s).
	WriteTimeout time.Duration
}

func (c *ConnConfig) defaults() {
	if c.QueueLen <= 0 {
		c.QueueLen = 512
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 16 << 20
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 10 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 20 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
}

// Conn is one client's signalling WebSocket. Send may be called from any
// goroutine; it never blocks on the network.
type Conn struct {
	ws  *websocket.Conn
	cfg ConnConfig
	log *slog.Logger

	// wake (capacity 1) tells the writer there is work.
	wake       chan struct{}
	writerDone chan struct{}

	mu sync.Mutex // guards the fields below
	// queue holds encoded frames not yet written, queued their bytes.
	queue  [][]byte
	queued int
	// closing is set once; final is the last frame before the close
	// frame, or nil.
	closing bool
	final   []byte
	// text is set once the client sent a text (protojson) frame: answers
	// go out the same way.
	text bool
}

func newConn(ws *websocket.Conn, cfg ConnConfig, log *slog.Logger) *Conn {
	cfg.defaults()
	c := &Conn{ws: ws, cfg: cfg, log: log, wake: make(chan struct{}, 1), writerDone: make(chan struct{})}
	go c.writer()
	return c
}

func (c *Conn) encode(msg *livekit.SignalResponse) ([]byte, bool, error) {
	c.mu.Lock()
	text := c.text
	c.mu.Unlock()
	if text {
		b, err := protojson.Marshal(msg)
		return b, true, err
	}
	b, err := proto.Marshal(msg)
	return b, false, err
}

// Send queues msg. A full queue closes the connection (the client is not
// reading) and returns ErrClosed.
func (c *Conn) Send(msg *livekit.SignalResponse) error {
	b, _, err := c.encode(msg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	if len(c.queue) >= c.cfg.QueueLen || c.queued+len(b) > c.cfg.QueueBytes {
		c.mu.Unlock()
		c.log.Info("closing a slow signalling client")
		c.Close(nil)
		return ErrClosed
	}
	c.queue = append(c.queue, b)
	c.queued += len(b)
	c.mu.Unlock()
	c.poke()
	return nil
}

func (c *Conn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close sends leave (if not nil) after the frames already queued, then a
// close frame, and closes the socket. Idempotent; it does not wait.
func (c *Conn) Close(leave *livekit.LeaveRequest) {
	var final []byte
	if leave != nil {
		final, _, _ = c.encode(&livekit.SignalResponse{Message: &livekit.SignalResponse_Leave{Leave: leave}})
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing, c.final = true, final
	c.mu.Unlock()
	c.poke()
}

// Done is closed when the writer has finished and the socket is closed.
func (c *Conn) Done() <-chan struct{} { return c.writerDone }

func (c *Conn) setText() {
	c.mu.Lock()
	c.text = true
	c.mu.Unlock()
}

func (c *Conn) writer() {
	defer close(c.writerDone)
	defer c.ws.Close()
	ping := time.NewTicker(c.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.wake:
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout)); err != nil {
				return
			}
			continue
		}
		c.mu.Lock()
		frames, closing, final, text := c.queue, c.closing, c.final, c.text
		c.queue, c.queued = nil, 0
		c.mu.Unlock()
		mt := websocket.BinaryMessage
		if text {
			mt = websocket.TextMessage
		}
		for _, f := range frames {
			_ = c.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
			if err := c.ws.WriteMessage(mt, f); err != nil {
				c.mu.Lock()
				c.closing = true
				c.mu.Unlock()
				return
			}
		}
		if closing {
			if final != nil {
				_ = c.ws.SetWriteDeadline(time.Now().Add(time.Second))
				_ = c.ws.WriteMessage(mt, final)
			}
			_ = c.ws.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return
		}
	}
}
