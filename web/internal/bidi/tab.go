package bidi

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
)

// Tab is a top-level browsing context in a user context of its own
// (own cookies and storage, as another person's browser would have).
type Tab struct {
	conn        *Conn
	id          string
	userContext string
}

// NewTab opens a tab in a new user context.
func (f *Firefox) NewTab(ctx context.Context) (*Tab, error) {
	var uc struct {
		UserContext string `json:"userContext"`
	}
	if err := f.conn.Call(ctx, "browser.createUserContext", nil, &uc); err != nil {
		return nil, err
	}
	var bc struct {
		Context string `json:"context"`
	}
	if err := f.conn.Call(ctx, "browsingContext.create", map[string]any{"type": "tab", "userContext": uc.UserContext}, &bc); err != nil {
		return nil, err
	}
	return &Tab{conn: f.conn, id: bc.Context, userContext: uc.UserContext}, nil
}

// ID is the browsing context ID (log events name it).
func (t *Tab) ID() string { return t.id }

// Navigate loads url and waits for the load to complete.
func (t *Tab) Navigate(ctx context.Context, url string) error {
	return t.conn.Call(ctx, "browsingContext.navigate", map[string]any{"context": t.id, "url": url, "wait": "complete"}, nil)
}

// Reload reloads the page and waits for the load to complete.
func (t *Tab) Reload(ctx context.Context) error {
	return t.conn.Call(ctx, "browsingContext.reload", map[string]any{"context": t.id, "wait": "complete"}, nil)
}

// ScriptError is an exception thrown by evaluated script.
type ScriptError struct {
	Text string
}

func (e *ScriptError) Error() string { return "script: " + e.Text }

// Evaluate evaluates a JavaScript expression in the page and returns its
// value decoded as RemoteValue.Decode does. With awaitPromise, a promise
// is awaited and its fulfilment value returned. No handles are kept
// (resultOwnership none), so nothing needs releasing.
func (t *Tab) Evaluate(ctx context.Context, expr string, awaitPromise bool) (any, error) {
	var res struct {
		Type             string      `json:"type"`
		Result           RemoteValue `json:"result"`
		ExceptionDetails struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	err := t.conn.Call(ctx, "script.evaluate", map[string]any{
		"expression":      expr,
		"target":          map[string]any{"context": t.id},
		"awaitPromise":    awaitPromise,
		"resultOwnership": "none",
		// Deep enough for the arrays and records a test reads.
		"serializationOptions": map[string]any{"maxObjectDepth": 8},
		// As a user's action would: autoplay and such allowed.
		"userActivation": true,
	}, &res)
	if err != nil {
		return nil, err
	}
	if res.Type == "exception" {
		return nil, &ScriptError{Text: res.ExceptionDetails.Text}
	}
	v, err := res.Result.Decode()
	if err != nil {
		return nil, fmt.Errorf("decoding %q: %w", expr, err)
	}
	return v, nil
}

// Screenshot captures the tab's viewport as PNG.
func (t *Tab) Screenshot(ctx context.Context) ([]byte, error) {
	var res struct {
		Data string `json:"data"`
	}
	if err := t.conn.Call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": t.id}, &res); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(res.Data)
}

// SetViewport sizes the tab's viewport in CSS pixels.
func (t *Tab) SetViewport(ctx context.Context, width, height int) error {
	return t.conn.Call(ctx, "browsingContext.setViewport", map[string]any{
		"context": t.id, "viewport": map[string]int{"width": width, "height": height},
	}, nil)
}

// Click moves the mouse to (x, y) in CSS pixels of the viewport and
// clicks the left button: real input, as a person's click.
func (t *Tab) Click(ctx context.Context, x, y float64) error {
	return t.perform(ctx, map[string]any{
		"type": "pointer", "id": "mouse", "parameters": map[string]string{"pointerType": "mouse"},
		"actions": []map[string]any{
			{"type": "pointerMove", "x": int(math.Round(x)), "y": int(math.Round(y))},
			{"type": "pointerDown", "button": 0},
			{"type": "pointerUp", "button": 0},
		},
	})
}

// Type presses and releases a key for each character of text, into
// whatever has the focus.
func (t *Tab) Type(ctx context.Context, text string) error {
	var acts []map[string]any
	for _, r := range text {
		acts = append(acts, map[string]any{"type": "keyDown", "value": string(r)}, map[string]any{"type": "keyUp", "value": string(r)})
	}
	return t.perform(ctx, map[string]any{"type": "key", "id": "keyboard", "actions": acts})
}

func (t *Tab) perform(ctx context.Context, source map[string]any) error {
	return t.conn.Call(ctx, "input.performActions", map[string]any{"context": t.id, "actions": []any{source}}, nil)
}

// Close closes the tab and removes its user context.
func (t *Tab) Close(ctx context.Context) error {
	if err := t.conn.Call(ctx, "browsingContext.close", map[string]any{"context": t.id}, nil); err != nil {
		return err
	}
	return t.conn.Call(ctx, "browser.removeUserContext", map[string]any{"userContext": t.userContext}, nil)
}
