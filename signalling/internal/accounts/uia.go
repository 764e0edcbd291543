package accounts

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// Authentication types (Client-Server API, "Authentication types").
const (
	stageDummy    = "m.login.dummy"
	stagePassword = "m.login.password"
	stageRegToken = "m.login.registration_token"
)

// codeUnauthorized is M_UNAUTHORIZED, Synapse's answer to a wrong
// registration token.
const codeUnauthorized = "M_UNAUTHORIZED"

// maxUIASessions bounds the sessions held in memory.
const maxUIASessions = 10000

type uiaFlow struct {
	Stages []string `json:"stages"`
}

// uiaChallenge is the 401 body of the User-Interactive Authentication API
// ("User-interactive API in the REST API"): the flows, the session and the
// stages completed so far, plus errcode and error when a stage attempt
// failed. A plain challenge has no errcode, so that clients do not show
// it as a failure.
type uiaChallenge struct {
	Errcode   string         `json:"errcode,omitempty"`
	Msg       string         `json:"error,omitempty"`
	Completed []string       `json:"completed"`
	Flows     []uiaFlow      `json:"flows"`
	Params    map[string]any `json:"params"`
	Session   string         `json:"session"`
}

func (c *uiaChallenge) Error() string {
	if c.Errcode != "" {
		return "user-interactive auth: " + c.Errcode + ": " + c.Msg
	}
	return "user-interactive auth required"
}

// uiaSession is one user-interactive auth session. Its fields are guarded
// by the store's mutex.
type uiaSession struct {
	id      string
	op      string // "METHOD /path" of the operation being authorised
	userID  string // the user who must authenticate; "" for /register
	created time.Time

	completed []string
	// regToken is the registration token whose pending use the session
	// holds, until registration completes or the session expires.
	regToken string

	// Registration only: the parameters of an earlier request, for a
	// client that does not resend them, and the account made, for a
	// client that retries the completed request.
	username       *string
	passwordHash   string
	registeredUser string
}

// uiaRequest is one request's need for user-interactive auth.
type uiaRequest struct {
	op     string
	userID string
	flows  [][]string
	auth   json.RawMessage
}

type uiaStore struct {
	mu sync.Mutex // guards the fields below and every session's fields
	// sessions holds the live sessions by ID.
	sessions map[string]*uiaSession
	// swept is when expired sessions were last removed.
	swept time.Time
}

func newUIAStore() *uiaStore {
	return &uiaStore{sessions: map[string]*uiaSession{}}
}

// sweep removes the sessions older than timeout and returns the
// registration tokens whose pending uses they held.
func (st *uiaStore) sweep(now time.Time, timeout time.Duration) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if now.Sub(st.swept) < time.Minute && len(st.sessions) < maxUIASessions {
		return nil
	}
	st.swept = now
	var release []string
	for id, s := range st.sessions {
		if now.Sub(s.created) > timeout {
			if s.regToken != "" {
				release = append(release, s.regToken)
			}
			delete(st.sessions, id)
		}
	}
	return release
}

// releaseTokens gives back pending registration token uses.
func (a *Accounts) releaseTokens(ctx context.Context, tokens []string) {
	for _, t := range tokens {
		if err := a.releaseToken(ctx, t); err != nil {
			a.log.Warn("releasing a registration token use", "err", err)
		}
	}
}

// runUIA runs one round of user-interactive auth. It returns the session
// once one of the flows is complete; until then a *uiaChallenge (401), or
// another error for a request that is wrong in itself.
func (a *Accounts) runUIA(ctx context.Context, req uiaRequest) (*uiaSession, error) {
	now := a.now()
	a.releaseTokens(ctx, a.uia.sweep(now, a.cfg.UIATimeout))

	var auth map[string]json.RawMessage
	if raw := bytes.TrimSpace(req.auth); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &auth); err != nil {
			return nil, mxerr.BadJSON("auth must be an object")
		}
	}
	var authType, sessionID string
	if err := stringField(auth, "type", &authType); err != nil {
		return nil, err
	}
	if err := stringField(auth, "session", &sessionID); err != nil {
		return nil, err
	}

	s, err := a.uiaSessionFor(req, sessionID, now)
	if err != nil {
		return nil, err
	}
	if auth == nil {
		return nil, a.challenge(req, s, nil)
	}

	if authType != "" {
		offered := false
		for _, f := range req.flows {
			offered = offered || slices.Contains(f, authType)
		}
		if !offered {
			return nil, mxerr.New(http.StatusBadRequest, mxerr.CodeUnrecognized, "Unrecognised authentication type")
		}
		a.uia.mu.Lock()
		already := slices.Contains(s.completed, authType)
		a.uia.mu.Unlock()
		var stageErr *mxerr.MatrixError
		switch {
		case already:
			// Completed stages cannot be retried ("User-interactive API in
			// the REST API"): a retry is answered from the session.
		case authType == stageDummy:
		case authType == stagePassword:
			stageErr, err = a.checkPasswordStage(ctx, req.userID, auth)
		case authType == stageRegToken:
			stageErr, err = a.checkTokenStage(ctx, s, auth)
		}

		if err != nil {
			return nil, err
		}
		if stageErr != nil {
			return nil, a.challenge(req, s, stageErr)
		}
		a.uia.mu.Lock()
		if !slices.Contains(s.completed, authType) {
			s.completed = append(s.completed, authType)
		}
		a.uia.mu.Unlock()
	}

	a.uia.mu.Lock()
	done := false
	for _, f := range req.flows {
		all := true
		for _, st := range f {
			all = all && slices.Contains(s.completed, st)
		}
		done = done || all
	}
	a.uia.mu.Unlock()
	if !done {
		return nil, a.challenge(req, s, nil)
	}
	return s, nil
}

// uiaSessionFor finds the session the client named, or starts one.
func (a *Accounts) uiaSessionFor(req uiaRequest, id string, now time.Time) (*uiaSession, error) {
	a.uia.mu.Lock()
	defer a.uia.mu.Unlock()
	if id != "" {
		s := a.uia.sessions[id]
		if s == nil {
			return nil, mxerr.New(http.StatusBadRequest, mxerr.CodeUnknown, "Unknown session ID")
		}
		// A session authorises one operation for one user; anything else
		// would let a completed session be replayed against another
		// request.
		if s.op != req.op || s.userID != req.userID {
			return nil, mxerr.Forbidden("Requested operation has changed during the UI authentication session.")
		}
		return s, nil
	}
	if len(a.uia.sessions) >= maxUIASessions {
		return nil, mxerr.LimitExceeded(int64(time.Minute / time.Millisecond))
	}
	for {
		id, err := randomString(24, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
		if err != nil {
			return nil, err
		}
		if a.uia.sessions[id] == nil {
			s := &uiaSession{id: id, op: req.op, userID: req.userID, created: now}
			a.uia.sessions[id] = s
			return s, nil
		}
	}
}

// challenge is the 401 answer for s, carrying stageErr's code if set.
func (a *Accounts) challenge(req uiaRequest, s *uiaSession, stageErr *mxerr.MatrixError) *uiaChallenge {
	c := &uiaChallenge{Params: map[string]any{}, Session: s.id}
	for _, f := range req.flows {
		c.Flows = append(c.Flows, uiaFlow{Stages: f})
	}
	a.uia.mu.Lock()
	c.Completed = append([]string{}, s.completed...)
	a.uia.mu.Unlock()
	if stageErr != nil {
		c.Errcode, c.Msg = stageErr.Code, stageErr.Msg
	}
	return c
}

// checkPasswordStage checks an m.login.password stage ("Password-based"):
// the identified user must be the one the session is for. A wrong password
// is a stage failure (401 with M_FORBIDDEN); naming another user is a
// plain 403.
func (a *Accounts) checkPasswordStage(ctx context.Context, userID string, auth map[string]json.RawMessage) (*mxerr.MatrixError, error) {
	id, err := parseIdentifier(auth)
	if err != nil {
		return nil, err
	}
	who, err := a.identifyUser(id)
	if err != nil {
		return nil, err
	}
	if who != userID {
		return nil, mxerr.Forbidden("Invalid auth")
	}
	var password string
	if err := stringField(auth, "password", &password); err != nil {
		return nil, err
	}
	if err := a.loginUser.Check(userID); err != nil {
		return nil, err
	}
	ok, err := a.passwordMatches(ctx, userID, password)
	if err != nil {
		return nil, err
	}
	if !ok {
		return mxerr.Forbidden("Invalid password"), nil
	}
	return nil, nil
}

// checkTokenStage checks an m.login.registration_token stage
// ("Token-authenticated registration") and takes one pending use of the
// token for the session.
func (a *Accounts) checkTokenStage(ctx context.Context, s *uiaSession, auth map[string]json.RawMessage) (*mxerr.MatrixError, error) {
	raw, ok := auth["token"]
	if !ok {
		return mxerr.MissingParam("Missing registration token"), nil
	}
	var token string
	if err := json.Unmarshal(raw, &token); err != nil {
		return mxerr.InvalidParam("Registration token must be a string"), nil
	}
	a.uia.mu.Lock()
	held := s.regToken
	a.uia.mu.Unlock()
	if held != "" {
		return nil, nil // completed stages cannot be retried; no second use
	}
	ok, err := a.takeToken(ctx, token)
	if err != nil {
		return nil, err
	}
	if !ok {
		return mxerr.New(http.StatusUnauthorized, codeUnauthorized, "Invalid registration token"), nil
	}
	a.uia.mu.Lock()
	if s.regToken == "" {
		s.regToken, token = token, ""
	}
	a.uia.mu.Unlock()
	if token != "" { // a concurrent attempt on the same session won
		a.releaseTokens(ctx, []string{token})
	}
	return nil, nil
}

// stringField decodes m[key], if present, into dst; a value that is not a
// string is 400 M_INVALID_PARAM.
func stringField(m map[string]json.RawMessage, key string, dst *string) error {
	raw, ok := m[key]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return mxerr.InvalidParam("Bad parameter: " + key)
	}
	return nil
}
