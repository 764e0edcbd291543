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
// rooms must not import signalling, federation, sfu or pion; a test reads
// the import graph to keep it so.
package rooms
