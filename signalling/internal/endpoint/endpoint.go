package endpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
)

// Session is the authenticated caller of a request: one device of one
// user.
type Session struct {
	UserID   string
	DeviceID string
	Admin    bool
	// TokenHash identifies the access token the request used (its digest),
	// so that /logout can revoke exactly that token.
	TokenHash string
}

// Authenticator resolves an access token to a session. It returns a
// *mxerr.MatrixError (M_UNKNOWN_TOKEN) for a token that is not valid.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Session, error)
}

// Router registers handlers on the HTTP server, wrapping authenticated
// ones with the token check.
type Router struct {
	mux  server.Router
	auth Authenticator
}

// NewRouter returns a Router registering on mux and checking tokens with
// auth.
func NewRouter(mux server.Router, auth Authenticator) *Router {
	return &Router{mux: mux, auth: auth}
}

// Public registers h for pattern ("METHOD /path") with no authentication.
func (rt *Router) Public(pattern string, h http.HandlerFunc) {
	rt.mux.Handle(pattern, h)
}

// Handler is an authenticated handler.
type Handler func(w http.ResponseWriter, r *http.Request, s *Session)

// Authed registers h for pattern; requests without a valid access token
// get 401 M_MISSING_TOKEN or M_UNKNOWN_TOKEN and never reach h.
func (rt *Router) Authed(pattern string, h Handler) {
	rt.mux.Handle(pattern, rt.Wrap(h))
}

// Wrap turns an authenticated handler into an http.Handler.
func (rt *Router) Wrap(h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := rt.Session(r)
		if err != nil {
			server.WriteError(w, err)
			return
		}
		h(w, r, s)
	})
}

// Session authenticates r. Handlers for which authentication is optional
// call it themselves.
func (rt *Router) Session(r *http.Request) (*Session, error) {
	tok, err := AccessToken(r)
	if err != nil {
		return nil, err
	}
	return rt.auth.Authenticate(r.Context(), tok)
}

// AccessToken extracts the access token from the Authorization header
// (Bearer) or, deprecated but still used by clients, the access_token
// query parameter (Client-Server API, "Using access tokens").
func AccessToken(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", mxerr.UnknownToken("Invalid Authorization header")
		}
		return strings.TrimSpace(tok), nil
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		return tok, nil
	}
	return "", mxerr.MissingToken()
}

// DefaultMaxBody bounds a JSON request body unless a handler says
// otherwise; Synapse's default limit is of the same order.
const DefaultMaxBody = 1 << 20

// Decode reads r's body (at most max bytes; 0 means DefaultMaxBody) as one
// JSON value into dst. The errors are the spec's: M_TOO_LARGE (413) for an
// oversized body, M_NOT_JSON (400) for a body that is not JSON, M_BAD_JSON
// (400) for JSON of the wrong shape or types.
func Decode(r *http.Request, max int64, dst any) error {
	b, err := ReadBody(r, max)
	if err != nil {
		return err
	}
	return Unmarshal(b, dst)
}

// ReadBody reads r's body, at most max bytes (0: DefaultMaxBody).
func ReadBody(r *http.Request, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxBody
	}
	if r.ContentLength > max {
		return nil, mxerr.TooLarge(fmt.Sprintf("Request body is larger than %d bytes", max))
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, mxerr.NotJSON("Could not read the request body")
	}
	if int64(len(b)) > max {
		return nil, mxerr.TooLarge(fmt.Sprintf("Request body is larger than %d bytes", max))
	}
	return b, nil
}

// Unmarshal decodes b into dst with Decode's error codes. An empty body
// decodes as {} (several endpoints allow an absent body).
func Unmarshal(b []byte, dst any) error {
	if len(strings.TrimSpace(string(b))) == 0 {
		b = []byte("{}")
	}
	if !json.Valid(b) {
		return mxerr.NotJSON("Content not JSON")
	}
	if err := json.Unmarshal(b, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				return mxerr.BadJSON(fmt.Sprintf("Expected a JSON %s here, got %s", goKind(te.Type.Kind().String()), te.Value))
			}
			return mxerr.BadJSON(fmt.Sprintf("%s: expected %s, got %s", field, goKind(te.Type.Kind().String()), te.Value))
		}
		return mxerr.BadJSON(err.Error())
	}
	return nil
}

func goKind(k string) string {
	switch k {
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "number"
	case "bool":
		return "boolean"
	}
	return k
}

// Write answers with v as JSON and status 200.
func Write(w http.ResponseWriter, v any) { server.WriteJSON(w, http.StatusOK, v) }

// Fail answers with err (see server.WriteError).
func Fail(w http.ResponseWriter, err error) { server.WriteError(w, err) }
