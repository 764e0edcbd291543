// Package interop has an independent Matrix implementation,
// gomatrixserverlib, check what Plexus produces end to end: rooms built
// with the real rooms.Service over real storage (SQLite and PostgreSQL),
// in room versions 10 and 11, with local events, events from a second
// Plexus server and events built and signed by a foreign server that is
// gomatrixserverlib itself.
//
// For every event Plexus stored, gomatrixserverlib parses the federation
// JSON as a receiving server would and checks the event ID (reference
// hash), the content hash, the ed25519 signatures against the key Plexus
// signs with (from internal/keyring), the redaction algorithm, and the
// authorisation rules against the auth events and the state Plexus used:
// an event Plexus accepted must be allowed, one it rejected refused, one
// it soft-failed allowed by its own state but refused by the current one.
// Plexus's auth events selection is compared with gomatrixserverlib's.
//
// TestForeignJoin has gomatrixserverlib join a Plexus room as a foreign
// server: PerformJoin over make_join and send_join with X-Matrix requests
// signed by its fclient, checking the returned state and auth chain as a
// joining server must. TestForeignJoin points it at a stand-in that
// answers from rooms.Service and storage, in room versions 10 and 11.
//
// TestHostileServer points it at the real thing: hs1 and hs2 are plexus
// processes started by fedtest, and hs4 is a foreign server made of
// gomatrixserverlib and an in-test HTTPS server (hs4_test.go) whose
// certificate is in the federation's CA file, which publishes its key at
// /_matrix/key/v2/server and which gomatrixserverlib uses to check the
// X-Matrix signature, hashes and signatures of every transaction the
// Plexus servers send it. hs4 joins a room on hs1 through hs1's federation
// listener, then misbehaves: an event with a bad signature (dropped), a
// request with a bad X-Matrix signature (401), an event whose content was
// rewritten after signing (accepted redacted), and, once banned, an event
// evading the ban (soft-failed) and events citing the ban or contradicting
// the state before them (rejected). mautrix clients on hs1 and hs2 must
// never be shown anything hs4 forged.
//
// A disagreement fails the test with the event's JSON and both verdicts.
// The pure functions underneath (rooms/internal/pdu, auth, stateres) are
// compared with gomatrixserverlib over generated graphs in
// rooms/internal/difftest; this package checks what the whole pipeline
// stores and would serve to other servers.
//
// gomatrixserverlib is imported by the tests only; the package has no
// non-test code apart from this file.
package interop
