// Package invites keeps a local user's membership in rooms this server
// is not in: an invite another server had us countersign (Server-Server
// API, "Inviting to a room", PUT /invite), and our rejection of it, which
// went through that server with make_leave/send_leave ("Leaving Rooms
// (Rejecting Invites)").
//
// Such a room has no event graph here, so the invite cannot reach /sync
// through the event stream like a local one. It is kept in a table on the
// aux stream instead, which the sync engine reads beside the event stream:
// a pending invite appears in rooms.invite with the stripped state the
// inviting server sent, a rejection in rooms.leave. Once the user's
// membership of the room is in the event stream (the join that accepts
// the invite, or the invite itself arriving by a transaction because
// another local user is in the room), the stream's record wins.
package invites
