// Package keys publishes this server's signing keys and finds other
// servers' (Server-Server API, "Retrieving server keys").
//
// A remote key is looked up in memory, then in the server_keys table,
// then fetched from the server itself (GET /_matrix/key/v2/server, which
// must carry the server's own valid signature), then from each trusted
// notary in turn (POST /_matrix/key/v2/query, whose answers must carry the
// notary's signature as well as the origin's). Concurrent lookups share
// one fetch, and a key that could not be found is not looked for again for
// a minute, so a flood of requests naming an unknown key cannot turn into
// a flood of fetches.
//
// Validity follows the key object's definition: a key from verify_keys is
// valid for timestamps up to the lesser of its valid_until_ts and 7 days
// after we fetched it; a key from old_verify_keys only for timestamps
// before its expired_ts. Request signatures are checked at the current
// time, so old keys never authenticate requests ("old_verify_keys ...
// are only valid for signing events").
//
// The package also serves the key endpoints, which need no
// authentication: our own keys, and the notary API answering from what
// it has stored (fetching afresh when that is not valid long enough) with
// its own signature added to each response.
package keys
