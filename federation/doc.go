// Package federation is the server side of the Server-Server API: it makes
// this server one of several equal owners of a room.
//
// It publishes and fetches server keys, signs every request it sends and
// verifies every request it receives (internal/transport, internal/keys),
// sends this server's events and EDUs to every other server in a room
// through queues persisted in storage that survive restarts and outages
// (internal/queue), hands every PDU it receives to the room's worker in
// package rooms, which runs the receive pipeline, and fetches whatever a
// received PDU refers to that this server lacks (missing prev events with
// get_missing_events, falling back to state_ids and state resolution).
// Joins, leaves and invites across servers are the make_/send_ handshakes
// of "Joining Rooms", "Leaving Rooms" and "Inviting to a room". A join
// may be partial-state (send_join with omit_members; partial.go): the
// members are fetched in the background while the user already takes part.
//
// The package sits on rooms and storage only. What it needs from the
// client side (profiles, device keys, to-device delivery) it reaches through
// interfaces that signalling implements and cmd/plexus wires.
package federation
