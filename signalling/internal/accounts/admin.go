package accounts

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Shared-secret registration, compatible with Synapse's
// /_synapse/admin/v1/register and so with register_new_matrix_user and
// the tools built for it: GET hands out a nonce; POST registers a user if
// its mac is the HMAC-SHA1, keyed with the shared secret, of
// nonce NUL username NUL password NUL ("admin" | "notadmin")
// [NUL user_type].
const (
	nonceTTL  = 60 * time.Second
	maxNonces = 10000
)

// nonceStore holds the nonces handed out and not yet used.
type nonceStore struct {
	mu sync.Mutex // guards nonces
	// nonces maps each live nonce to when it was issued.
	nonces map[string]time.Time
}

func newNonceStore() *nonceStore { return &nonceStore{nonces: map[string]time.Time{}} }

// issue returns a fresh nonce, or "" if too many are outstanding.
func (n *nonceStore) issue(now time.Time) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("accounts: nonce: %w", err)
	}
	nonce := hex.EncodeToString(b[:])
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, t := range n.nonces {
		if now.Sub(t) > nonceTTL {
			delete(n.nonces, k)
		}
	}
	if len(n.nonces) >= maxNonces {
		return "", nil
	}
	n.nonces[nonce] = now
	return nonce, nil
}

// take consumes nonce, reporting whether it was live. A nonce is gone
// after one attempt, right or wrong, as in Synapse.
func (n *nonceStore) take(nonce string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.nonces[nonce]
	delete(n.nonces, nonce)
	return ok && now.Sub(t) <= nonceTTL
}

func sharedSecretDisabled() error {
	return mxerr.New(http.StatusBadRequest, mxerr.CodeUnknown, "Shared secret registration is not enabled")
}

// handleAdminNonce is GET /_synapse/admin/v1/register.
func (a *Accounts) handleAdminNonce(w http.ResponseWriter, r *http.Request) {
	if a.cfg.RegistrationSharedSecret == "" {
		fail(w, sharedSecretDisabled())
		return
	}
	nonce, err := a.nonces.issue(a.now())
	if err != nil {
		fail(w, err)
		return
	}
	if nonce == "" {
		fail(w, mxerr.LimitExceeded(nonceTTL.Milliseconds()))
		return
	}
	endpoint.Write(w, map[string]string{"nonce": nonce})
}

type adminRegisterBody struct {
	Nonce       *string `json:"nonce"`
	Username    *string `json:"username"`
	Password    *string `json:"password"`
	Admin       bool    `json:"admin"`
	UserType    *string `json:"user_type"`
	Displayname *string `json:"displayname"`
	Mac         *string `json:"mac"`
}

// adminMAC is the hex HMAC-SHA1 the client must send.
func adminMAC(secret, nonce, username, password string, admin bool, userType *string) string {
	m := hmac.New(sha1.New, []byte(secret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	m.Write([]byte(nonce + "\x00" + username + "\x00" + password + "\x00" + role))
	if userType != nil {
		m.Write([]byte("\x00" + *userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// handleAdminRegister is POST /_synapse/admin/v1/register. It works
// whatever Config.Registration says: it is how an operator makes accounts
// on a closed server.
func (a *Accounts) handleAdminRegister(w http.ResponseWriter, r *http.Request) {
	if a.cfg.RegistrationSharedSecret == "" {
		fail(w, sharedSecretDisabled())
		return
	}
	var body adminRegisterBody
	if err := endpoint.Decode(r, 0, &body); err != nil {
		fail(w, err)
		return
	}
	// Synapse's checks, in Synapse's order.
	if body.Nonce == nil {
		fail(w, mxerr.BadJSON("nonce must be specified"))
		return
	}
	if !a.nonces.take(*body.Nonce, a.now()) {
		fail(w, mxerr.InvalidParam("unrecognised nonce"))
		return
	}
	if body.Username == nil || *body.Username == "" || len(*body.Username) > 512 || strings.ContainsRune(*body.Username, 0) {
		fail(w, mxerr.InvalidParam("Invalid username"))
		return
	}
	if body.Password == nil || *body.Password == "" || len(*body.Password) > maxPasswordLen || strings.ContainsRune(*body.Password, 0) {
		fail(w, mxerr.InvalidParam("Invalid password"))
		return
	}
	if body.UserType != nil && *body.UserType != "support" && *body.UserType != "bot" {
		fail(w, mxerr.InvalidParam("Invalid user type"))
		return
	}
	if body.Mac == nil {
		fail(w, mxerr.BadJSON("mac must be specified"))
		return
	}
	want := adminMAC(a.cfg.RegistrationSharedSecret, *body.Nonce, *body.Username, *body.Password, body.Admin, body.UserType)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(*body.Mac))) {
		fail(w, mxerr.Forbidden("HMAC incorrect"))
		return
	}

	local := strings.ToLower(*body.Username)
	if err := a.checkLocalpart(local); err != nil {
		fail(w, err)
		return
	}
	displayName := local
	if body.Displayname != nil && *body.Displayname != "" {
		displayName = *body.Displayname
	}
	hash, err := hashPassword(*body.Password)
	if err != nil {
		fail(w, err)
		return
	}
	ctx := r.Context()
	userID := a.userID(local)
	if err := a.db.Update(ctx, func(tx *storage.Tx) error {
		return a.insertUser(ctx, tx, userID, hash, body.Admin, displayName)
	}); err != nil {
		fail(w, err)
		return
	}
	a.log.Info("registered with the shared secret", "user", userID, "admin", body.Admin)
	resp, err := a.login(ctx, userID, "", nil, clientIP(r))
	if err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, resp)
}
