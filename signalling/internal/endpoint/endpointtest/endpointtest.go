package endpointtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Tokens authenticates a fixed set of access tokens; any other token is
// M_UNKNOWN_TOKEN. Each call returns a copy of the session.
type Tokens map[string]*endpoint.Session

// Authenticate implements endpoint.Authenticator.
func (t Tokens) Authenticate(_ context.Context, tok string) (*endpoint.Session, error) {
	if s := t[tok]; s != nil {
		c := *s
		return &c, nil
	}
	return nil, mxerr.UnknownToken("Unknown access token")
}

// Do sends one request to base+path as the holder of token ("" for
// none) and returns the status and body. body is sent as is when it is
// a string or []byte, else encoded as JSON; nil sends no body.
func Do(tb testing.TB, client *http.Client, base, method, path, token string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, out
}
