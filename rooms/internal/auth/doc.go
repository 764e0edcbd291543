// Package auth implements the Matrix room authorisation rules of room
// versions 10, 11 and 12 (rooms v10/v11/v12, "Authorisation rules"), the
// auth_events checks and "Auth events selection" of the server-server API
// ("Checks performed on receipt of a PDU"), and power level parsing.
//
// Everything here is a pure function: events and state in, verdict out. No
// I/O, no clock, no goroutines, no mutable globals. The caller chooses the
// state an event is checked against (its auth events, the state before it,
// or the current state of the room) by passing a StateGetter; this is how
// the same rules serve steps 4, 5 and 6 of the receipt checks and the
// iterative auth checks of state resolution.
//
// A refusal is a *NotAllowedError naming the rule that failed, numbered as
// the spec numbers it for the event's room version: v10 and v11 share one
// numbering, v12 inserts rule 2 (room_id is the create event's ID) and rule
// 10.4 (creators may not be listed in power_levels.users), shifting the
// rules after them. The per-version numbers are a table in rules.go.
//
// Where the spec is silent or ambiguous the choice made is documented at
// the point of use, with the reason (usually: what Synapse, the reference
// implementation, does, so that servers agree on state).
package auth
