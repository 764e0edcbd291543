package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// DoRaw sends a request to destination, signed like Do, and returns a
// 2xx answer unread, for answers that are not JSON (media). The caller
// reads the headers and must close Body; the Client's timeout runs until
// then. body, if not nil, is sent as application/json. A non-2xx answer
// is a *RemoteError, its body read and closed.
func (c *Client) DoRaw(ctx context.Context, destination, method, path string, body []byte) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	res, err := c.sendRaw(ctx, destination, method, path, body)
	if err != nil {
		cancel()
		return nil, err
	}
	res.Body = &cancelOnClose{ReadCloser: res.Body, cancel: cancel}
	return res, nil
}

func (c *Client) sendRaw(ctx context.Context, destination, method, path string, body []byte) (*http.Response, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("transport: path %q must start with /", path)
	}
	target, err := c.res.Resolve(ctx, destination)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("transport: bad path %q: %w", path, err)
	}
	u.Scheme, u.Host = "https", poolKey(target)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	req.Host = target.Host
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// The signed URI is exactly what goes on the request line.
	auth, err := SignRequest(c.serverName, destination, c.keyID, c.key, method, req.URL.RequestURI(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	res, err := c.fed.Do(req)
	if err != nil {
		return nil, fmt.Errorf("transport: %s %s to %s: %w", method, path, destination, unwrapURLError(err))
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, readRemoteError(res)
	}
	return res, nil
}

// GetURL GETs an absolute https URL without authentication, following
// https redirects: the Location another server's media download points
// to (Server-Server API, "Content Repository": the URL is fetched as it
// is, with no X-Matrix header). Certificates are checked against the
// Client's roots. The caller must close Body; a non-2xx answer is a
// *RemoteError.
func (c *Client) GetURL(ctx context.Context, rawURL string) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("transport: %q is not an absolute https URL", rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("transport: %w", err)
	}
	// The well-known client is the plain HTTPS client: our roots, our
	// dialer, https-only redirects without loops.
	res, err := c.wk.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("transport: GET %s: %w", u.Redacted(), unwrapURLError(err))
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		cancel()
		return nil, readRemoteError(res)
	}
	res.Body = &cancelOnClose{ReadCloser: res.Body, cancel: cancel}
	return res, nil
}

// readRemoteError reads and closes a non-2xx answer.
func readRemoteError(res *http.Response) *RemoteError {
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	re := &RemoteError{Status: res.StatusCode, Body: b}
	var eb struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(b, &eb) == nil {
		re.ErrCode, re.Message = eb.ErrCode, eb.Error
	}
	return re
}

// cancelOnClose releases a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
