package accounts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// maxRegistrationTokenLen is the spec's limit on registration tokens
// ("Token-authenticated registration": at most 64 characters of the opaque
// identifier grammar).
const maxRegistrationTokenLen = 64

type registerBody struct {
	Auth                     json.RawMessage `json:"auth"`
	Username                 *string         `json:"username"`
	Password                 *string         `json:"password"`
	DeviceID                 *string         `json:"device_id"`
	InitialDeviceDisplayName *string         `json:"initial_device_display_name"`
	InhibitLogin             bool            `json:"inhibit_login"`
	RefreshToken             bool            `json:"refresh_token"` // ignored: we issue no refresh tokens
}

type registerResponse struct {
	UserID      string `json:"user_id"`
	HomeServer  string `json:"home_server"`
	AccessToken string `json:"access_token,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
}

func registrationDisabled() error { return mxerr.Forbidden("Registration has been disabled") }

// registrationFlows are the UIA flows of /register for the mode.
func (a *Accounts) registrationFlows() [][]string {
	if a.cfg.Registration == RegistrationToken {
		return [][]string{{stageRegToken}}
	}
	return [][]string{{stageDummy}}
}

// handleRegister is POST /register (Client-Server API, "Account
// registration"). The username is checked before user-interactive auth,
// as the spec requires; the password may come with any request of the
// session.
func (a *Accounts) handleRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ip := clientIP(r)
	// Only a registration that creates an account takes a token (below),
	// as Synapse's rc_registration does: the user-interactive steps before
	// it are refused once there is none, but do not use one up, so that
	// one registration is not three.
	if err := a.register.Peek(ip); err != nil {
		fail(w, err)
		return
	}
	switch r.URL.Query().Get("kind") {
	case "", "user":
	case "guest":
		fail(w, mxerr.New(http.StatusForbidden, mxerr.CodeGuestAccessForbidden, "Guest access is disabled"))
		return
	default:
		fail(w, mxerr.InvalidParam("Invalid kind"))
		return
	}
	if a.cfg.Registration == RegistrationClosed {
		fail(w, registrationDisabled())
		return
	}
	var body registerBody
	if err := endpoint.Decode(r, 0, &body); err != nil {
		fail(w, err)
		return
	}
	if body.Username != nil {
		local := strings.ToLower(*body.Username)
		if err := a.checkAvailable(ctx, local); err != nil {
			fail(w, err)
			return
		}
		body.Username = &local
	}
	if body.Password != nil && len(*body.Password) > maxPasswordLen {
		fail(w, mxerr.InvalidParam("Invalid password"))
		return
	}
	deviceID, displayName, err := deviceParams(body.DeviceID, body.InitialDeviceDisplayName)
	if err != nil {
		fail(w, err)
		return
	}

	s, err := a.runUIA(ctx, uiaRequest{op: "POST /register", flows: a.registrationFlows(), auth: body.Auth})
	var challenge *uiaChallenge
	if errors.As(err, &challenge) {
		// Keep what this request said for the request that completes the
		// session, which clients may send with auth alone.
		if perr := a.rememberRegistration(challenge.Session, body); perr != nil {
			fail(w, perr)
			return
		}
	}
	if err != nil {
		fail(w, err)
		return
	}

	a.uia.mu.Lock()
	registered, username, storedHash, regToken := s.registeredUser, s.username, s.passwordHash, s.regToken
	a.uia.mu.Unlock()
	if registered != "" {
		// A retry of a request that already registered: answer as if it
		// were the first, with a fresh login (as Synapse does).
		a.finishRegistration(w, r, registered, body, deviceID, displayName)
		return
	}
	if body.Username == nil {
		body.Username = username
	}
	hash := storedHash
	if body.Password != nil && *body.Password != "" {
		if hash, err = hashPassword(*body.Password); err != nil {
			fail(w, err)
			return
		}
	}
	if hash == "" {
		fail(w, mxerr.MissingParam("Missing params: password"))
		return
	}
	local := ""
	if body.Username != nil {
		local = *body.Username
	} else if local, err = randomString(12, "abcdefghijklmnopqrstuvwxyz0123456789"); err != nil {
		fail(w, err)
		return
	}
	userID := a.userID(local)
	if err := a.register.Check(ip); err != nil {
		fail(w, err)
		return
	}
	err = a.db.Update(ctx, func(tx *storage.Tx) error {
		if err := a.insertUser(ctx, tx, userID, hash, false, local); err != nil {
			return err
		}
		if regToken != "" {
			if _, err := tx.Exec(ctx, `UPDATE registration_tokens SET pending = pending - 1, completed = completed + 1
				WHERE token = ? AND pending > 0`, regToken); err != nil {
				return fmt.Errorf("accounts: complete registration token use: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		fail(w, err)
		return
	}
	a.uia.mu.Lock()
	s.registeredUser = userID
	s.regToken = "" // the use is completed, not pending: nothing to release
	a.uia.mu.Unlock()
	a.log.Info("registered", "user", userID)
	a.finishRegistration(w, r, userID, body, deviceID, displayName)
}

// rememberRegistration stores the username and password hash of a
// request that did not complete the session.
func (a *Accounts) rememberRegistration(sessionID string, body registerBody) error {
	var hash string
	if body.Password != nil && *body.Password != "" {
		var err error
		if hash, err = hashPassword(*body.Password); err != nil {
			return err
		}
	}
	a.uia.mu.Lock()
	defer a.uia.mu.Unlock()
	s := a.uia.sessions[sessionID]
	if s == nil {
		return nil
	}
	if body.Username != nil {
		s.username = body.Username
	}
	if hash != "" {
		s.passwordHash = hash
	}
	return nil
}

func (a *Accounts) finishRegistration(w http.ResponseWriter, r *http.Request, userID string, body registerBody, deviceID string, displayName *string) {
	if body.InhibitLogin {
		endpoint.Write(w, registerResponse{UserID: userID, HomeServer: a.cfg.ServerName})
		return
	}
	resp, err := a.login(r.Context(), userID, deviceID, displayName, clientIP(r))
	if err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, registerResponse{UserID: userID, HomeServer: a.cfg.ServerName, AccessToken: resp.AccessToken, DeviceID: resp.DeviceID})
}

// checkAvailable validates a lower-cased localpart and checks it is free.
func (a *Accounts) checkAvailable(ctx context.Context, local string) error {
	if err := a.checkLocalpart(local); err != nil {
		return err
	}
	exists, err := a.UserExists(ctx, a.userID(local))
	if err != nil {
		return err
	}
	if exists {
		return errUserInUse()
	}
	return nil
}

// handleAvailable is GET /register/available.
func (a *Accounts) handleAvailable(w http.ResponseWriter, r *http.Request) {
	if err := a.register.Check(clientIP(r)); err != nil {
		fail(w, err)
		return
	}
	if a.cfg.Registration == RegistrationClosed {
		fail(w, registrationDisabled())
		return
	}
	q := r.URL.Query()
	if !q.Has("username") {
		fail(w, mxerr.MissingParam("Missing string query parameter: username"))
		return
	}
	if err := a.checkAvailable(r.Context(), strings.ToLower(q.Get("username"))); err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, map[string]bool{"available": true})
}

// handleTokenValidity is GET /_matrix/client/v1/register/
// m.login.registration_token/validity, rate limited against guessing as
// the spec asks.
func (a *Accounts) handleTokenValidity(w http.ResponseWriter, r *http.Request) {
	if err := a.register.Check(clientIP(r)); err != nil {
		fail(w, err)
		return
	}
	if a.cfg.Registration != RegistrationToken {
		fail(w, mxerr.Forbidden("Registration by token is not enabled"))
		return
	}
	q := r.URL.Query()
	if !q.Has("token") {
		fail(w, mxerr.MissingParam("Missing string query parameter: token"))
		return
	}
	token := q.Get("token")
	valid := false
	err := a.db.View(r.Context(), func(tx *storage.Tx) error {
		t, ok, err := readToken(r.Context(), tx, token)
		valid = ok && t.valid(a.nowMS())
		return err
	})
	if err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, map[string]bool{"valid": valid})
}

// regToken is a registration_tokens row.
type regToken struct {
	usesAllowed sql.NullInt64
	pending     int64
	completed   int64
	expiry      sql.NullInt64
}

// valid reports whether one more registration may use the token.
func (t regToken) valid(nowMS int64) bool {
	if t.expiry.Valid && t.expiry.Int64 <= nowMS {
		return false
	}
	return !t.usesAllowed.Valid || t.pending+t.completed < t.usesAllowed.Int64
}

func readToken(ctx context.Context, tx *storage.Tx, token string) (regToken, bool, error) {
	var t regToken
	err := tx.QueryRow(ctx, `SELECT uses_allowed, pending, completed, expiry_time FROM registration_tokens WHERE token = ?`, token).
		Scan(&t.usesAllowed, &t.pending, &t.completed, &t.expiry)
	if errors.Is(err, sql.ErrNoRows) {
		return regToken{}, false, nil
	}
	if err != nil {
		return regToken{}, false, fmt.Errorf("accounts: read registration token: %w", err)
	}
	return t, true, nil
}

// takeToken takes one pending use of token if it is valid.
func (a *Accounts) takeToken(ctx context.Context, token string) (bool, error) {
	ok := false
	err := a.db.Update(ctx, func(tx *storage.Tx) error {
		t, found, err := readToken(ctx, tx, token)
		if err != nil || !found || !t.valid(a.nowMS()) {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE registration_tokens SET pending = pending + 1 WHERE token = ?`, token); err != nil {
			return fmt.Errorf("accounts: take registration token use: %w", err)
		}
		ok = true
		return nil
	})
	return ok, err
}

// releaseToken gives back a pending use of token.
func (a *Accounts) releaseToken(ctx context.Context, token string) error {
	return a.db.Exec(ctx, `UPDATE registration_tokens SET pending = pending - 1 WHERE token = ? AND pending > 0`, token)
}

// RegistrationTokenInfo describes a registration token.
type RegistrationTokenInfo struct {
	Token string
	// UsesAllowed is the number of registrations the token allows; 0
	// means unlimited.
	UsesAllowed int64
	// Expiry is when the token stops working; zero means never.
	Expiry    time.Time
	Pending   int64
	Completed int64
}

// CreateRegistrationToken stores a new registration token. The token must
// follow the opaque identifier grammar, at most 64 characters.
func (a *Accounts) CreateRegistrationToken(ctx context.Context, t RegistrationTokenInfo) error {
	if t.Token == "" || len(t.Token) > maxRegistrationTokenLen || strings.Trim(t.Token, opaqueChars) != "" {
		return mxerr.InvalidParam("Registration tokens must be 1 to 64 characters of [A-Za-z0-9._~-]")
	}
	if t.UsesAllowed < 0 {
		return mxerr.InvalidParam("uses_allowed must not be negative")
	}
	var uses, expiry sql.NullInt64
	if t.UsesAllowed > 0 {
		uses = sql.NullInt64{Int64: t.UsesAllowed, Valid: true}
	}
	if !t.Expiry.IsZero() {
		expiry = sql.NullInt64{Int64: t.Expiry.UnixMilli(), Valid: true}
	}
	return a.db.Update(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?)
			ON CONFLICT (token) DO NOTHING`, t.Token, uses, expiry)
		if err != nil {
			return fmt.Errorf("accounts: insert registration token: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return mxerr.InvalidParam("Registration token already exists")
		}
		return nil
	})
}

// GetRegistrationToken reads a registration token; ok is false if there
// is none.
func (a *Accounts) GetRegistrationToken(ctx context.Context, token string) (t RegistrationTokenInfo, ok bool, err error) {
	err = a.db.View(ctx, func(tx *storage.Tx) error {
		row, found, err := readToken(ctx, tx, token)
		if err != nil || !found {
			return err
		}
		ok = true
		t = RegistrationTokenInfo{Token: token, UsesAllowed: row.usesAllowed.Int64, Pending: row.pending, Completed: row.completed}
		if row.expiry.Valid {
			t.Expiry = time.UnixMilli(row.expiry.Int64)
		}
		return nil
	})
	return t, ok, err
}

// opaqueChars is the opaque identifier alphabet (Appendices, "Opaque
// Identifiers").
const opaqueChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
