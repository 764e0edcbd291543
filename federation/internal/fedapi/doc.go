// Package fedapi serves the federation endpoints other homeservers read
// from us (Server-Server API): the events and state of rooms we hold
// ("Retrieving events", "Backfilling and retrieving missing events",
// "Authentication" of events), the queries about our users, aliases and
// rooms ("Querying for information", "OpenID", "Public Room Directory",
// "Device Management", "End-to-End Encryption"), our media ("Content
// Repository") and GET /version.
//
// Every endpoint but /version and /openid/userinfo is authenticated
// through fedhttp.Wrap, so a handler knows the requesting server. Room
// endpoints answer only a server allowed to see the room (access.go):
// one that the room's server ACL admits and that has a user joined in the
// room, now or at the event asked about, or any server when the room's
// history is world-readable. Rejected events are never served, and an
// event that an accepted redaction applies to is served redacted (with
// the room version's algorithm, which keeps what its signatures and event
// ID cover: redact.go).
//
// Data about rooms comes from the event store (Store, which *storage.DB
// implements) and the room service (Graph: the state before an event);
// data about our users, aliases, rooms and media comes from the client
// side through fedlocal.Local, which signalling implements.
package fedapi
