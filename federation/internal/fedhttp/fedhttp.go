package fedhttp

import (
	"errors"
	"io"
	"net/http"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
)

// DefaultMaxBody bounds a federation request body. A transaction holds at
// most 50 PDUs and 100 EDUs of at most 64 KiB each (Server-Server API,
// "Transactions"; "Size limits" for PDUs), so 16 MiB leaves room for a
// full one and refuses anything larger before it is read.
const DefaultMaxBody = 16 << 20

// Authenticator checks the Authorization: X-Matrix header of r against
// its body and returns the origin server. A failure is a
// *mxerr.MatrixError: 401 M_UNAUTHORIZED, as the spec's "Request
// Authentication" says for every failure, a wrong destination included.
type Authenticator interface {
	Authenticate(r *http.Request, body []byte) (origin string, err error)
}

// Request is an authenticated federation request.
type Request struct {
	// Origin is the server that signed the request.
	Origin string
	// Body is the request body as received (nil for GET).
	Body []byte
}

// Handler serves one authenticated federation endpoint.
type Handler func(w http.ResponseWriter, r *http.Request, req *Request)

// Router is where endpoints are registered; *server.Server is one.
type Router = server.Router

// Wrap reads the body (up to maxBody bytes; 0 means DefaultMaxBody),
// authenticates the request and calls h. An oversized body is 413
// M_TOO_LARGE and an unauthenticated request gets the Authenticator's
// error; neither reaches h.
func Wrap(auth Authenticator, maxBody int64, h Handler) http.Handler {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Body != nil && r.Body != http.NoBody {
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					server.WriteError(w, mxerr.TooLarge("Request body too large"))
					return
				}
				server.WriteError(w, mxerr.BadJSON("Could not read the request body"))
				return
			}
			if len(b) > 0 {
				body = b
			}
		}
		origin, err := auth.Authenticate(r, body)
		if err != nil {
			server.WriteError(w, err)
			return
		}
		h(w, r, &Request{Origin: origin, Body: body})
	})
}
