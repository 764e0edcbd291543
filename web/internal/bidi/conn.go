package bidi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/gorilla/websocket"
)

// Error is a command's error reply (WebDriver BiDi, "Errors").
type Error struct {
	Method  string
	Code    string // e.g. "no such frame", "invalid argument"
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("bidi %s: %s: %s", e.Method, e.Code, e.Message)
}

// ErrClosed is returned by commands on a closed connection.
var ErrClosed = errors.New("bidi: connection closed")

// message is any message from the remote end: a command's reply
// (ID set, Type "success" or "error") or an event (Type "event").
type message struct {
	Type    string          `json:"type"`
	ID      *int64          `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// Conn is one WebDriver BiDi session's WebSocket: one reader goroutine
// hands replies to the waiting commands and events to the handler.
type Conn struct {
	ws      *websocket.Conn
	onEvent func(method string, params json.RawMessage)
	done    chan struct{} // closed when the reader has returned

	writeMu sync.Mutex // serialises writes (one writer at a time on a gorilla conn)

	mu      sync.Mutex // guards the following fields
	nextID  int64
	pending map[int64]chan message
	err     error // why the reader stopped
}

// Dial connects to a BiDi endpoint (ws://host:port/session). onEvent, if
// not nil, is called from the reader goroutine for every event; it must
// not block and must not issue commands.
func Dial(ctx context.Context, url string, onEvent func(method string, params json.RawMessage)) (*Conn, error) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bidi: dial %s: %w", url, err)
	}
	c := &Conn{ws: ws, onEvent: onEvent, done: make(chan struct{}), pending: map[int64]chan message{}}
	go c.read()
	return c, nil
}

func (c *Conn) read() {
	defer close(c.done)
	var err error
	for {
		var m message
		if err = c.ws.ReadJSON(&m); err != nil {
			break
		}
		switch {
		case m.Type == "event":
			if c.onEvent != nil {
				c.onEvent(m.Method, m.Params)
			}
		case m.ID != nil:
			c.mu.Lock()
			ch := c.pending[*m.ID]
			delete(c.pending, *m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m // buffered
			}
		}
	}
	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// Call sends a command and waits for its reply, decoding the result
// into out (if not nil).
func (c *Conn) Call(ctx context.Context, method string, params, out any) error {
	if params == nil {
		params = struct{}{}
	}
	ch := make(chan message, 1)
	c.mu.Lock()
	if c.err != nil || c.pending == nil {
		c.mu.Unlock()
		return ErrClosed
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	c.writeMu.Lock()
	err := c.ws.WriteJSON(map[string]any{"id": id, "method": method, "params": params})
	c.writeMu.Unlock()
	if err != nil {
		c.forget(id)
		return fmt.Errorf("bidi %s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("bidi %s: %w", method, ErrClosed)
		}
		if m.Type == "error" {
			return &Error{Method: method, Code: m.Error, Message: m.Message}
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(m.Result, out); err != nil {
			return fmt.Errorf("bidi %s: decoding the result: %w", method, err)
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		return fmt.Errorf("bidi %s: %w", method, ctx.Err())
	}
}

func (c *Conn) forget(id int64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Close closes the WebSocket and waits for the reader. Idempotent. The
// close error is not returned: once the remote end has gone (Firefox
// exits on browser.close) closing our side can only fail, harmlessly.
func (c *Conn) Close() {
	_ = c.ws.Close()
	<-c.done
}
