package accounts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Limits on client-chosen device fields, as Synapse's.
const (
	maxDeviceIDLen          = 255
	maxDeviceDisplayNameLen = 100 // MAX_DEVICE_DISPLAY_NAME_LEN
)

// identifier is a user identifier object (Client-Server API, "Identifier
// types").
type identifier struct {
	Type string          `json:"type"`
	User json.RawMessage `json:"user"`
}

// parseIdentifier reads the identifier of a login or password auth dict,
// falling back to the deprecated top-level "user", "medium" and "address"
// (Client-Server API, POST /login).
func parseIdentifier(m map[string]json.RawMessage) (identifier, error) {
	if raw, ok := m["identifier"]; ok {
		var id identifier
		if err := json.Unmarshal(raw, &id); err != nil || id.Type == "" {
			return identifier{}, mxerr.InvalidParam("Invalid identifier")
		}
		return id, nil
	}
	if raw, ok := m["user"]; ok {
		return identifier{Type: "m.id.user", User: raw}, nil
	}
	if _, ok := m["medium"]; ok {
		return identifier{Type: "m.id.thirdparty"}, nil
	}
	return identifier{}, mxerr.MissingParam("Missing param: identifier")
}

// identifyUser turns an identifier into a local user ID. m.id.user takes a
// full user ID or a localpart, matched case-insensitively (user IDs are
// created lower-case). Third-party identifiers are never bound here, so
// they get the spec's 403 for an unknown 3PID.
func (a *Accounts) identifyUser(id identifier) (string, error) {
	switch id.Type {
	case "m.id.user":
	case "m.id.thirdparty", "m.id.phone":
		return "", mxerr.Forbidden("Third-party identifier is not known to this server")
	default:
		return "", mxerr.New(http.StatusBadRequest, mxerr.CodeUnknown, "Unknown login identifier type")
	}
	if len(id.User) == 0 {
		return "", mxerr.MissingParam("Missing param: user")
	}
	var user string
	if err := json.Unmarshal(id.User, &user); err != nil {
		return "", mxerr.InvalidParam("Bad parameter: user")
	}
	if user == "" {
		return "", mxerr.MissingParam("Missing param: user")
	}
	if strings.HasPrefix(user, "@") {
		local, ok := a.localpart(user)
		if !ok {
			return "", mxerr.Forbidden("Invalid username or password")
		}
		user = local
	}
	return a.userID(strings.ToLower(user)), nil
}

// checkCredentials reads the user and checks password. An unknown user or
// one without a password costs a hash all the same, so that timing does
// not tell which users exist.
func (a *Accounts) checkCredentials(ctx context.Context, userID, password string) (u userRow, ok bool, err error) {
	var found bool
	err = a.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		u, found, err = lookupUser(ctx, tx, userID)
		return err
	})
	if err != nil {
		return userRow{}, false, err
	}
	if !found || u.passwordHash == "" || len(password) > maxPasswordLen {
		checkPassword(dummyHash(), password)
		return u, false, nil
	}
	return u, checkPassword(u.passwordHash, password), nil
}

// passwordMatches reports whether password is userID's (an active user's).
func (a *Accounts) passwordMatches(ctx context.Context, userID, password string) (bool, error) {
	u, ok, err := a.checkCredentials(ctx, userID, password)
	return ok && !u.deactivated, err
}

func (a *Accounts) handleLoginFlows(w http.ResponseWriter, r *http.Request) {
	endpoint.Write(w, map[string]any{"flows": []map[string]string{{"type": stagePassword}}})
}

type loginBody struct {
	Type                     *string `json:"type"`
	DeviceID                 *string `json:"device_id"`
	InitialDeviceDisplayName *string `json:"initial_device_display_name"`
	RefreshToken             bool    `json:"refresh_token"` // ignored: we issue no refresh tokens
}

type loginResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
	HomeServer  string `json:"home_server"`
}

// handleLogin is POST /login (Client-Server API, "Login"), password only.
func (a *Accounts) handleLogin(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	if err := a.loginIP.Check(ip); err != nil {
		fail(w, err)
		return
	}
	b, err := endpoint.ReadBody(r, 0)
	if err != nil {
		fail(w, err)
		return
	}
	var m map[string]json.RawMessage
	var body loginBody
	if err := endpoint.Unmarshal(b, &m); err != nil {
		fail(w, err)
		return
	}
	if err := endpoint.Unmarshal(b, &body); err != nil {
		fail(w, err)
		return
	}
	if body.Type == nil {
		fail(w, mxerr.MissingParam("Missing params: type"))
		return
	}
	if *body.Type != stagePassword {
		fail(w, mxerr.New(http.StatusBadRequest, mxerr.CodeUnknown, "Unknown login type "+*body.Type))
		return
	}
	deviceID, displayName, err := deviceParams(body.DeviceID, body.InitialDeviceDisplayName)
	if err != nil {
		fail(w, err)
		return
	}
	id, err := parseIdentifier(m)
	if err != nil {
		fail(w, err)
		return
	}
	userID, err := a.identifyUser(id)
	if err != nil {
		fail(w, err)
		return
	}
	var password string
	if err := stringField(m, "password", &password); err != nil {
		fail(w, err)
		return
	}
	if _, ok := m["password"]; !ok {
		fail(w, mxerr.MissingParam("Missing params: password"))
		return
	}
	if err := a.loginUser.Check(userID); err != nil {
		fail(w, err)
		return
	}
	u, ok, err := a.checkCredentials(r.Context(), userID, password)
	if err != nil {
		fail(w, err)
		return
	}
	if !ok {
		fail(w, mxerr.Forbidden("Invalid username or password"))
		return
	}
	if u.deactivated {
		fail(w, mxerr.New(http.StatusForbidden, mxerr.CodeUserDeactivated, "This account has been deactivated"))
		return
	}
	resp, err := a.login(r.Context(), userID, deviceID, displayName, ip)
	if err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, resp)
}

// deviceParams validates a client's device_id and display name; an empty
// device ID means "make one up".
func deviceParams(deviceID, displayName *string) (string, *string, error) {
	id := ""
	if deviceID != nil {
		id = *deviceID
		if len(id) > maxDeviceIDLen || strings.ContainsRune(id, 0) {
			return "", nil, mxerr.InvalidParam("Invalid device_id")
		}
	}
	if displayName != nil && utf8.RuneCountInString(*displayName) > maxDeviceDisplayNameLen {
		// Synapse truncates an over-long initial display name rather than
		// failing the login.
		s := []rune(*displayName)[:maxDeviceDisplayNameLen]
		t := string(s)
		displayName = &t
	}
	return id, displayName, nil
}

// login makes a device (deviceID, or a new one when empty) and a token
// for userID.
func (a *Accounts) login(ctx context.Context, userID, deviceID string, displayName *string, ip string) (loginResponse, error) {
	given := deviceID != ""
	if !given {
		var err error
		if deviceID, err = newDeviceID(); err != nil {
			return loginResponse{}, err
		}
	}
	var token string
	err := a.db.Update(ctx, func(tx *storage.Tx) error {
		var err error
		token, err = a.issueToken(ctx, tx, userID, deviceID, displayName, ip)
		return err
	})
	if err != nil {
		return loginResponse{}, err
	}
	if given {
		a.sessions.invalidate(userID, func(s endpoint.Session) bool { return s.DeviceID == deviceID })
	}
	return loginResponse{UserID: userID, AccessToken: token, DeviceID: deviceID, HomeServer: a.cfg.ServerName}, nil
}

// handleLogout is POST /logout: the token's device goes with it.
func (a *Accounts) handleLogout(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	if err := a.deleteDevices(r.Context(), s.UserID, []string{s.DeviceID}, false); err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, empty)
}

// handleLogoutAll is POST /logout/all: every token and device of the user.
func (a *Accounts) handleLogoutAll(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	if err := a.deleteDevices(r.Context(), s.UserID, nil, true); err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, empty)
}

func (a *Accounts) handleWhoami(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	endpoint.Write(w, map[string]any{"user_id": s.UserID, "device_id": s.DeviceID, "is_guest": false})
}

type passwordBody struct {
	NewPassword   *string         `json:"new_password"`
	LogoutDevices *bool           `json:"logout_devices"`
	Auth          json.RawMessage `json:"auth"`
}

// handlePassword is POST /account/password (Client-Server API, "Password
// management"), authorised by an m.login.password stage. Unless
// logout_devices is false, every other device and token of the user is
// revoked; the requesting token never is.
func (a *Accounts) handlePassword(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var body passwordBody
	if err := endpoint.Decode(r, 0, &body); err != nil {
		fail(w, err)
		return
	}
	if body.NewPassword == nil || *body.NewPassword == "" {
		fail(w, mxerr.MissingParam("Missing params: new_password"))
		return
	}
	if len(*body.NewPassword) > maxPasswordLen {
		fail(w, mxerr.InvalidParam("Password too long"))
		return
	}
	ctx := r.Context()
	if _, err := a.runUIA(ctx, uiaRequest{
		op: "POST /account/password", userID: s.UserID, flows: [][]string{{stagePassword}}, auth: body.Auth,
	}); err != nil {
		fail(w, err)
		return
	}
	hash, err := hashPassword(*body.NewPassword)
	if err != nil {
		fail(w, err)
		return
	}
	logout := body.LogoutDevices == nil || *body.LogoutDevices
	var deleted []string
	err = a.db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET password_hash = ? WHERE user_id = ?`, hash, s.UserID); err != nil {
			return fmt.Errorf("accounts: set password: %w", err)
		}
		if !logout {
			return nil
		}
		others, err := otherDevices(ctx, tx, s.UserID, s.DeviceID)
		if err != nil {
			return err
		}
		if deleted, err = deleteDevicesTx(ctx, tx, s.UserID, others, false); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND token_hash <> ?`, s.UserID, s.TokenHash)
		return err
	})
	if err != nil {
		fail(w, err)
		return
	}
	if logout {
		a.sessions.invalidate(s.UserID, func(c endpoint.Session) bool { return c.TokenHash != s.TokenHash })
		if a.onDeviceDeleted != nil {
			for _, d := range deleted {
				a.onDeviceDeleted(ctx, s.UserID, d)
			}
		}
	}
	endpoint.Write(w, empty)
}

// otherDevices lists the user's devices other than keep.
func otherDevices(ctx context.Context, tx *storage.Tx, userID, keep string) ([]string, error) {
	ids, err := tx.Strings(ctx, `SELECT device_id FROM devices WHERE user_id = ? AND device_id <> ?`, userID, keep)
	if err != nil {
		return nil, fmt.Errorf("accounts: list devices: %w", err)
	}
	return ids, nil
}

// CheckPassword returns nil if password is the active user userID's, else
// 403 M_FORBIDDEN (or 429 when the user's password attempts are
// exhausted). Other slices call it for their own m.login.password stages.
func (a *Accounts) CheckPassword(ctx context.Context, userID, password string) error {
	if err := a.loginUser.Check(userID); err != nil {
		return err
	}
	ok, err := a.passwordMatches(ctx, userID, password)
	if err != nil {
		return err
	}
	if !ok {
		return mxerr.Forbidden("Invalid password")
	}
	return nil
}
