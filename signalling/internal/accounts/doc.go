// Package accounts is the account side of the Client-Server API: users and
// their passwords, devices and access tokens, and the per-user data that
// lives beside them.
//
// It serves (Client-Server API sections in brackets):
//
//   - registration with user-interactive auth, open or by registration
//     token ("Account registration", "User-Interactive Authentication
//     API", "Token-authenticated registration"), and Synapse's
//     shared-secret admin registration (/_synapse/admin/v1/register);
//   - login with a password, logout, whoami and password change ("Login",
//     "Password management");
//   - devices ("Device management");
//   - profiles ("Profiles");
//   - account data ("Client Config"), which /sync reads as a stream through
//     [Accounts.AccountDataSince], and room tags ("Room Tagging"), stored
//     as m.tag room account data;
//   - filters ("Filtering"), which /sync reads through [Accounts.Filter].
//
// # Tokens and sessions
//
// An access token is 32 random bytes; the database keeps only its SHA-256
// digest. [Accounts.Authenticate] answers from a bounded in-memory cache
// keyed by that digest, filled from the database on a miss. Everything that
// revokes tokens (logout, device deletion, password change) invalidates the
// cache after its transaction commits, and a fill that raced with an
// invalidation is dropped, so a revoked token is never cached.
//
// # User-interactive auth
//
// UIA sessions live in memory and expire after Config.UIATimeout. A
// session is bound to the operation (method and path) and, for
// authenticated endpoints, to the user that started it. A registration
// token stage holds one "pending" use of its token until the registration
// completes (pending becomes completed) or the session expires (released);
// [Accounts.Start] clears pending uses left by a previous process.
package accounts
