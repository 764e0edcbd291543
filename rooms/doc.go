// Package rooms holds the room event graph: each room is a DAG of signed,
// hashed events, checked against the auth rules of its room version, with
// state resolved across forks.
//
// The exported API is small: a Service that owns one serial worker per
// active room. Appending a local event and admitting a remote one both go
// through the room's worker, so events of one room are ordered and rooms
// never block one another. Each worker processes a batch of queued
// requests against the room held in memory while a second goroutine
// commits the previous batch; callers are answered only once their events
// are stored. Work that needs no room state runs outside the worker on all
// cores: format, signature and hash checks of remote events before they
// are queued, and the signatures of a batch's local events (an event ID
// does not cover signatures, so events are chained first and signed
// together). The machinery lives under internal/: pdu (event
// format, hashes, signatures, redaction), auth (authorisation rules) and
// stateres (state resolution), all pure functions.
//
// Federation's room endpoints have their entry points here too. Join
// stores a room joined through another server from the send_join answer,
// and AdmitWithState places an event past a gap on the state a remote
// server reports; both keep that state's events as outliers, which are
// stored but not placed in the graph and so never reach the
// client-visible stream. Template and Complete are the two halves of
// make_join/make_leave/make_knock, Countersign adds our signature to an
// invite, and StateBefore and Extremities answer /state_ids and friends.
// JoinPartial stores a room from a send_join answer without its members
// (omit_members) as partial-state, CompleteState adds them once the full
// state is fetched, and AwaitFullState lets callers wait for that.
//
// rooms must not import signalling, federation, sfu or pion; a test reads
// the import graph to keep it so.
package rooms
