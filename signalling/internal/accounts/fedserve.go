package accounts

import (
	"context"
	"encoding/json"
)

// PublicProfile returns every field of a local user's profile, as other
// servers see it through GET /_matrix/federation/v1/query/profile
// (profiles are public, as GET /profile is), or ErrUnknownUser.
func (a *Accounts) PublicProfile(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	return a.profile(ctx, userID)
}
