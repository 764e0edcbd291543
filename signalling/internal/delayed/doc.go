// Package delayed holds delayed events (MSC4140, "Cancellable delayed
// events"): an event a client hands the server now, to be sent into a room
// later unless the client restarts its timer or cancels it. MatrixRTC
// clients such as Element Call schedule their call membership's "leave"
// this way and restart it every few seconds, so the membership of a
// client that crashed or lost its network is removed by the server.
//
// Scheduled events live in the database (table delayed_events), so they
// survive a restart: Start sends the overdue ones at once. One goroutine
// sleeps until the earliest send time; sending goes through the normal room
// send path as the scheduling user and device (auth rules and power levels
// are checked then, not when scheduling). A delayed state event is dropped
// when the room's current state for its type and state key changes to
// another user's event first, as Synapse does on its current state
// deltas: it would overwrite newer state. An event that is stored but
// loses state resolution does not count.
//
// The management endpoints take the delay ID as the capability
// (MSC4140, "Delegating delayed events"): a request without an access
// token may manage any delayed event whose ID it knows; a request with one
// may manage only the caller's own.
package delayed
