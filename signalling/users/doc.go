// Package users is account administration from outside the running
// server: `plexus user add` creates accounts directly in the database
// through it. It is a thin door onto signalling/internal/accounts, which
// cmd cannot import (Go's internal rule), so that the command hashes
// passwords and validates user IDs exactly as the server does.
package users
