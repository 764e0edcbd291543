// Package pdu is the room event ("persistent data unit") itself: typed
// identifiers, the room version table, parsing and validating the
// federation event format, redaction, content and reference hashes, event
// IDs, and event signatures. Everything here is a pure function of its
// inputs; auth rules and state resolution build on it.
package pdu
