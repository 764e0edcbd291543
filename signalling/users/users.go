package users

import (
	"context"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/accounts"
)

// Add creates the local account @localpart:serverName in db and returns
// its user ID. localpart is lower-cased and must follow the user ID
// grammar; an existing account is an error (*mxerr.MatrixError
// M_USER_IN_USE). An empty password makes an account that cannot log in
// with a password.
func Add(ctx context.Context, db *storage.DB, serverName, localpart, password string, admin bool) (string, error) {
	a, err := accounts.New(accounts.Config{ServerName: serverName}, accounts.Deps{DB: db})
	if err != nil {
		return "", err
	}
	return a.CreateUser(ctx, localpart, password, admin)
}
