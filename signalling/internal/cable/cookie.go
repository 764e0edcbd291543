package cable

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// The session cookie carries the access token sealed with AES-256-GCM
// under Config.CookieKey: base64url(nonce || ciphertext+tag), with the
// cookie's name as additional data so a value cannot be moved to another
// cookie. It is HttpOnly (scripts cannot read the token), SameSite=Strict
// (other sites' pages never send it) and Secure on TLS. Revoking the
// token (logout) revokes the cookie with it: the server keeps no cookie
// state.

// IssueCookie sets the session cookie for token on w. r tells whether
// the cookie must be Secure (the request came over TLS, directly or, per
// X-Forwarded-Proto, through a proxy).
func (s *Server) IssueCookie(w http.ResponseWriter, r *http.Request, token string) error {
	v, err := s.sealCookie(token)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.CookieName, Value: v, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isTLS(r),
	})
	return nil
}

// ClearCookie removes the session cookie.
func (s *Server) ClearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isTLS(r),
	})
}

func isTLS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

func (s *Server) sealCookie(token string) (string, error) {
	n := s.aead.NonceSize()
	buf := make([]byte, n, n+len(token)+s.aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	buf = s.aead.Seal(buf, buf[:n], []byte(token), []byte(s.cfg.CookieName))
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// openCookie returns the token sealed in v; a value we did not seal (or
// that was altered) is M_UNKNOWN_TOKEN, like a bad access token.
func (s *Server) openCookie(v string) (string, error) {
	bad := mxerr.UnknownToken("Invalid session cookie")
	raw, err := base64.RawURLEncoding.DecodeString(v)
	n := s.aead.NonceSize()
	if err != nil || len(raw) < n+s.aead.Overhead() {
		return "", bad
	}
	tok, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(s.cfg.CookieName))
	if err != nil || len(tok) == 0 {
		return "", bad
	}
	return string(tok), nil
}

// handleIssueCookie is POST SessionPath: the web client, logged in with
// an access token, asks for the cookie so its WebSocket (which cannot
// carry an Authorization header) authenticates without the token in the
// URL.
func (s *Server) handleIssueCookie(w http.ResponseWriter, r *http.Request, _ *endpoint.Session) {
	tok, err := endpoint.AccessToken(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := s.IssueCookie(w, r, tok); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

// handleClearCookie is DELETE SessionPath. It needs no authentication:
// clearing a cookie must work even when its token is no longer valid.
func (s *Server) handleClearCookie(w http.ResponseWriter, r *http.Request) {
	s.ClearCookie(w, r)
	endpoint.Write(w, struct{}{})
}
