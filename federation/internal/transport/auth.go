package transport

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/servername"
	"github.com/plexus-chat/plexus/internal/signing"
)

// Authorization is one parsed "Authorization: X-Matrix ..." header
// (Server-Server API, "Request Authentication").
type Authorization struct {
	Origin string
	// Destination is empty when the sender left it out, which older
	// servers do.
	Destination string
	// Key is the key ID, e.g. "ed25519:abc".
	Key string
	Sig string
}

// String formats a as a sender should: one space after the scheme,
// lower-case names, quoted values and no whitespace around the commas
// ("For compatibility with older servers, the sender should ...").
func (a Authorization) String() string {
	var b strings.Builder
	b.WriteString("X-Matrix ")
	first := true
	add := func(name, value string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(name)
		b.WriteString(`="`)
		for i := 0; i < len(value); i++ {
			if value[i] == '"' || value[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(value[i])
		}
		b.WriteByte('"')
	}
	add("origin", a.Origin)
	if a.Destination != "" {
		add("destination", a.Destination)
	}
	add("key", a.Key)
	add("sig", a.Sig)
	return b.String()
}

// ParseAuthorization parses an Authorization header value with the
// X-Matrix scheme. It follows the grammar of "Request Authentication"
// (RFC 9110 section 11.4): the scheme, one or more spaces, then
// comma-separated name=value pairs with optional spaces and tabs around
// the commas; names are case-insensitive; values may be quoted (with
// backslash escapes) or bare, and a bare value may contain colons for
// older senders. Unknown parameters are ignored. origin, key and sig are
// required.
func ParseAuthorization(header string) (Authorization, error) {
	var a Authorization
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "X-Matrix") {
		return a, errors.New("not an X-Matrix authorization")
	}
	s := strings.TrimLeft(rest, " ")
	seen := map[string]bool{}
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return a, fmt.Errorf("malformed parameter %q", truncate(s))
		}
		name := strings.ToLower(strings.TrimRight(s[:eq], " \t"))
		if strings.ContainsAny(name, " \t,\"") {
			return a, fmt.Errorf("malformed parameter name %q", truncate(name))
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		var value string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(c)
				i++
			}
			if !closed {
				return a, fmt.Errorf("unterminated quoted value for %q", name)
			}
			value, s = b.String(), s[i:]
		} else {
			end := strings.IndexAny(s, ", \t")
			if end < 0 {
				end = len(s)
			}
			value, s = s[:end], s[end:]
		}
		s = strings.TrimLeft(s, " \t")
		if s != "" {
			if s[0] != ',' {
				return a, fmt.Errorf("expected ',' after %q", name)
			}
			s = s[1:]
		}
		if seen[name] {
			return a, fmt.Errorf("parameter %q given twice", name)
		}
		seen[name] = true
		switch name {
		case "origin":
			a.Origin = value
		case "destination":
			a.Destination = value
		case "key":
			a.Key = value
		case "sig":
			a.Sig = value
		}
	}
	switch {
	case a.Origin == "":
		return a, errors.New("missing origin")
	case a.Key == "":
		return a, errors.New("missing key")
	case a.Sig == "":
		return a, errors.New("missing sig")
	}
	return a, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// requestJSON is the object signed for a request ("Request
// Authentication", step 1). content is omitted when the request has no
// body.
func requestJSON(method, uri, origin, destination string, content *cjson.Value) cjson.Value {
	ms := []cjson.Member{
		cjson.M("method", cjson.Str(method)),
		cjson.M("uri", cjson.Str(uri)),
		cjson.M("origin", cjson.Str(origin)),
		cjson.M("destination", cjson.Str(destination)),
	}
	if content != nil {
		ms = append(ms, cjson.M("content", *content))
	}
	return cjson.Obj(ms...)
}

// SignRequest returns the Authorization header value for a request from
// origin to destination. uri is the path and query as sent; body is the
// JSON body (nil or empty for none).
func SignRequest(origin, destination, keyID string, key ed25519.PrivateKey, method, uri string, body []byte) (string, error) {
	var content *cjson.Value
	if len(body) > 0 {
		v, err := cjson.Parse(body)
		if err != nil {
			return "", fmt.Errorf("transport: request body: %w", err)
		}
		content = &v
	}
	signed, err := signing.Sign(requestJSON(method, uri, origin, destination, content), origin, keyID, key)
	if err != nil {
		return "", fmt.Errorf("transport: signing request: %w", err)
	}
	sig, _ := signing.Signature(signed, origin, keyID)
	return Authorization{Origin: origin, Destination: destination, Key: keyID, Sig: sig}.String(), nil
}

// KeySource gives the key a server signed with. atTS is the time (ms) the
// key must be valid at; 0 means now.
type KeySource interface {
	VerifyKey(ctx context.Context, server, keyID string, atTS int64) (ed25519.PublicKey, error)
}

// Verifier authenticates inbound federation requests; it satisfies
// fedhttp.Authenticator.
type Verifier struct {
	serverName string
	keys       KeySource
}

// NewVerifier returns a Verifier for requests addressed to serverName.
func NewVerifier(serverName string, keys KeySource) *Verifier {
	return &Verifier{serverName: serverName, keys: keys}
}

func unauthorized(format string, args ...any) *mxerr.MatrixError {
	return mxerr.Newf(http.StatusUnauthorized, mxerr.CodeUnauthorized, format, args...)
}

// Authenticate checks the X-Matrix Authorization headers of r against body
// and returns the origin server. A request may carry several headers (one
// per signing key); it is accepted if any of them verifies. Failures are
// 401 M_UNAUTHORIZED, including a destination other than this server,
// which "must deny the request with an HTTP status code 401".
func (v *Verifier) Authenticate(r *http.Request, body []byte) (string, error) {
	headers := r.Header.Values("Authorization")
	if len(headers) == 0 {
		return "", unauthorized("Missing Authorization header")
	}
	var content *cjson.Value
	if len(body) > 0 {
		c, err := cjson.Parse(body)
		if err != nil {
			return "", mxerr.NotJSON("Request body is not valid JSON")
		}
		content = &c
	}
	uri := r.URL.RequestURI()
	var firstErr *mxerr.MatrixError
	for _, h := range headers {
		origin, err := v.check(r.Context(), h, r.Method, uri, content)
		if err == nil {
			return origin, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", firstErr
}

// check verifies one header.
func (v *Verifier) check(ctx context.Context, header, method, uri string, content *cjson.Value) (string, *mxerr.MatrixError) {
	a, err := ParseAuthorization(header)
	if err != nil {
		return "", unauthorized("Bad X-Matrix Authorization header: %v", err)
	}
	if err := servername.Check(a.Origin); err != nil {
		return "", unauthorized("Bad origin %q in Authorization header: %v", truncate(a.Origin), err)
	}
	// "destination ... For compatibility with older servers, recipients
	// should accept requests without this parameter".
	if a.Destination != "" && a.Destination != v.serverName {
		return "", unauthorized("Request is for %q, not this server", truncate(a.Destination))
	}
	if !strings.HasPrefix(a.Key, signing.AlgEd25519+":") {
		return "", unauthorized("Unsupported key algorithm in %q", truncate(a.Key))
	}
	pub, err := v.keys.VerifyKey(ctx, a.Origin, a.Key, 0)
	if err != nil {
		return "", unauthorized("Cannot verify the signature of %s: unknown or expired key %s", a.Origin, truncate(a.Key))
	}
	// The signed JSON always names us as destination: the header may omit
	// it, the signature never does (step 1).
	obj := requestJSON(method, uri, a.Origin, v.serverName, content).With("signatures",
		cjson.Obj(cjson.M(a.Origin, cjson.Obj(cjson.M(a.Key, cjson.Str(a.Sig))))))
	if err := signing.Verify(obj, a.Origin, a.Key, pub); err != nil {
		return "", unauthorized("Invalid signature from %s with key %s", a.Origin, a.Key)
	}
	return a.Origin, nil
}
