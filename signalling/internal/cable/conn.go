package cable

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// closeGrace bounds how long a closing connection may spend sending its
// disconnect frame and WebSocket close frame.
const closeGrace = time.Second

// conn is one WebSocket connection (ActionCable's "connection consumer"):
// an authenticated device with its subscriptions. Per tailscale's derp
// model it has one reader (the HTTP handler's goroutine, which runs the
// consumer's commands in order) and one writer goroutine draining a
// bounded queue of encoded frames; channel goroutines only enqueue.
type conn struct {
	srv  *Server
	ws   *websocket.Conn
	sess *endpoint.Session
	// cancel stops every subscription's context.
	cancel context.CancelFunc
	// wake (capacity 1) tells the writer there are frames or that the
	// connection is closing.
	wake       chan struct{}
	writerDone chan struct{}
	// wg counts the subscriptions' goroutines.
	wg sync.WaitGroup

	mu sync.Mutex // guards the fields below
	// queue holds frames not yet taken by the writer; inflight counts
	// those it took and has not finished writing. Their sum is bounded
	// by Config.QueueSize.
	queue    [][]byte
	inflight int
	// closing is set once; final is the frame (a disconnect) to send
	// before the close frame, or nil.
	closing bool
	final   []byte

	// subs is owned by the reader goroutine: only it adds and removes
	// subscriptions.
	subs map[string]*subscription
}

func newConn(srv *Server, ws *websocket.Conn, sess *endpoint.Session, cancel context.CancelFunc) *conn {
	return &conn{
		srv: srv, ws: ws, sess: sess, cancel: cancel,
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
}

// enqueue queues frame for the writer. A frame for a subscription that
// has been unsubscribed is dropped, so nothing reaches the consumer for
// an identifier after it unsubscribed. When the queue is full the
// consumer is too slow: the connection is closed with a reconnect hint
// (the consumer resumes from the last token it received) and enqueue
// reports false.
func (c *conn) enqueue(sub *subscription, frame []byte) bool {
	c.mu.Lock()
	if c.closing || (sub != nil && sub.stopped) {
		c.mu.Unlock()
		return false
	}
	if len(c.queue)+c.inflight >= c.srv.cfg.QueueSize {
		c.mu.Unlock()
		c.srv.metrics.slowConsumers.Inc()
		c.srv.log.Info("closing a slow consumer", "user", c.sess.UserID, "device", c.sess.DeviceID)
		// No hurry: the frame being written may finish (within
		// WriteTimeout) so that the disconnect can follow it.
		c.close(disconnectFrame(ReasonSlowConsumer, true), false)
		return false
	}
	c.queue = append(c.queue, frame)
	c.mu.Unlock()
	c.signal()
	return true
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default: // the writer already has a pending wake-up
	}
}

// close starts closing the connection: subscriptions stop, queued frames
// are dropped, and the writer sends final (if not nil) and a close frame
// and closes the socket. With hurry a write in progress is cut short
// (within closeGrace), at the cost of the final frame when the consumer
// is not reading. It is idempotent and does not wait.
func (c *conn) close(final []byte, hurry bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.final = final
	c.queue = nil
	c.mu.Unlock()
	c.cancel()
	if hurry {
		_ = c.ws.UnderlyingConn().SetWriteDeadline(time.Now().Add(closeGrace))
	}
	c.signal()
}

// writeLoop is the writer goroutine.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	defer c.ws.Close()
	// The queue and spare trade places at each batch, so that queueing
	// does not allocate.
	var spare [][]byte
	for range c.wake {
		for {
			c.mu.Lock()
			if c.closing {
				final := c.final
				c.mu.Unlock()
				c.writeFinal(final)
				return
			}
			batch := c.queue
			c.queue = spare[:0]
			c.inflight = len(batch)
			c.mu.Unlock()
			if len(batch) == 0 {
				spare = batch
				break
			}
			for _, frame := range batch {
				if err := c.write(frame); err != nil {
					c.close(nil, true)
					break
				}
				c.srv.metrics.messagesSent.Inc()
				c.mu.Lock()
				c.inflight--
				closing := c.closing
				c.mu.Unlock()
				if closing {
					break
				}
			}
			clear(batch) // the frames are garbage once written
			spare = batch
		}
	}
}

func (c *conn) write(frame []byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout)); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, frame)
}

// writeFinal sends the disconnect frame and the WebSocket close frame,
// best effort: the consumer may be gone or not reading.
func (c *conn) writeFinal(final []byte) {
	deadline := time.Now().Add(closeGrace)
	if final != nil {
		if c.ws.SetWriteDeadline(deadline) == nil && c.ws.WriteMessage(websocket.TextMessage, final) == nil {
			c.srv.metrics.messagesSent.Inc()
		}
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline)
}

// readLoop runs the consumer's commands until the socket fails or closes.
func (c *conn) readLoop(ctx context.Context) {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		// The reader's own stack stays as shallow as the read path; the
		// command's work, possibly deep, runs on a short-lived one.
		c.srv.workers.run(func() bool { c.handle(ctx, data); return true })
	}
}

// handle runs one command. Like ActionCable's server, a command it cannot
// run (bad JSON, an unknown command or identifier) is logged and ignored;
// only subscribe answers a failure, with reject_subscription, so the
// consumer's rejected() callback runs.
func (c *conn) handle(ctx context.Context, data []byte) {
	var cmd command
	if err := json.Unmarshal(data, &cmd); err != nil {
		c.srv.log.Debug("cable: undecodable command", "user", c.sess.UserID, "err", err)
		return
	}
	switch cmd.Command {
	case cmdSubscribe:
		c.subscribe(ctx, cmd.Identifier)
	case cmdUnsubscribe:
		c.unsubscribe(cmd.Identifier)
	case cmdMessage:
		sub := c.subs[cmd.Identifier]
		if sub == nil {
			c.srv.log.Debug("cable: message for an unknown subscription", "user", c.sess.UserID)
			return
		}
		var a action
		if err := json.Unmarshal([]byte(cmd.Data), &a); err != nil {
			sub.reply(actionError("", "", mxerr.NotJSON("data is not a JSON object")))
			return
		}
		sub.ch.perform(ctx, a.Action, []byte(cmd.Data))
	default:
		c.srv.log.Debug("cable: unknown command", "user", c.sess.UserID, "command", cmd.Command)
	}
}

// subscribe adds a subscription, confirming or rejecting it.
func (c *conn) subscribe(ctx context.Context, identifier string) {
	if _, ok := c.subs[identifier]; ok {
		// ActionCable ignores a repeated subscribe for an identifier
		// already subscribed; its confirmation is already on the way.
		return
	}
	quoted := quoteIdentifier(identifier)
	reject := func(err error) {
		c.enqueue(nil, typedFrame(quoted, "reject_subscription", rejectReason(err)))
	}
	if len(c.subs) >= c.srv.cfg.MaxSubscriptions {
		reject(mxerr.LimitExceeded(0))
		return
	}
	p, err := parseParams(identifier)
	if err != nil {
		reject(err)
		return
	}
	subCtx, cancel := context.WithCancel(ctx)
	sub := &subscription{conn: c, quoted: quoted, cancel: cancel}
	ch, err := c.srv.newChannel(subCtx, c.sess, sub, p)
	if err != nil {
		cancel()
		if !isMatrixError(err) {
			c.srv.log.Warn("cable: subscription failed", "user", c.sess.UserID, "channel", p.Channel, "err", err)
		}
		reject(err)
		return
	}
	sub.ch = ch
	if c.subs == nil {
		c.subs = map[string]*subscription{}
	}
	c.subs[identifier] = sub
	c.srv.metrics.subscriptions.Inc()
	// Confirmation first: the channel's goroutine starts after it is
	// queued, so its messages follow it.
	c.enqueue(nil, typedFrame(quoted, "confirm_subscription", nil))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.srv.metrics.subscriptions.Dec()
		ch.run(subCtx)
	}()
}

// unsubscribe stops a subscription; nothing more is sent for it.
func (c *conn) unsubscribe(identifier string) {
	sub := c.subs[identifier]
	if sub == nil {
		return
	}
	delete(c.subs, identifier)
	c.mu.Lock()
	sub.stopped = true
	c.mu.Unlock()
	sub.cancel()
}

// subscription is one channel subscription of a connection.
type subscription struct {
	conn   *conn
	quoted []byte // the identifier as a JSON string
	cancel context.CancelFunc
	ch     channel
	// stopped is guarded by conn.mu: once set, enqueue drops the
	// subscription's frames.
	stopped bool
}

// push sends payload as a message of this subscription; false means the
// connection is closing (or the subscription ended) and the caller should
// stop.
func (s *subscription) push(payload []byte) bool {
	return s.conn.enqueue(s, messageFrame(s.quoted, payload))
}

// frameHead starts a message frame of this subscription with room for
// size more bytes: {"identifier":...,"message": to which the caller
// appends the payload and the closing brace, for pushFrame.
func (s *subscription) frameHead(size int) []byte {
	b := make([]byte, 0, len(s.quoted)+28+size)
	return appendMessageHead(b, s.quoted)
}

// pushFrame is push for a frame built on frameHead.
func (s *subscription) pushFrame(frame []byte) bool {
	return s.conn.enqueue(s, frame)
}

// reply is push for answers to actions.
func (s *subscription) reply(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.conn.srv.log.Error("cable: encoding a reply", "err", err)
		return
	}
	s.push(b)
}
