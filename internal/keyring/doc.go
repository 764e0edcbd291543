// Package keyring owns this server's ed25519 signing key: it creates the key
// on first start and loads the same key on every start after.
//
// The key signs events, federation requests and the server's published key
// list (Server-Server API, "Publishing Keys"), so losing or changing it makes
// other servers distrust this one. It lives in <data>/signing.key in
// Synapse's format, so that an operator can move a key between Synapse and
// Plexus:
//
//	ed25519 a_AbCd <unpadded base64 of the 32-byte seed>
//
// The key ID is "ed25519:" followed by the version ("a_AbCd"); the spec
// allows versions made of [a-zA-Z0-9_] (Server-Server API, Server Keys
// definition). A key file that others can read is refused: a leaked key
// lets anyone impersonate the server until every other server forgets it.
package keyring
