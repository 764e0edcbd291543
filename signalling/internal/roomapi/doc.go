// Package roomapi serves the room endpoints of the Client-Server API:
// room creation ("Rooms", "Creation"), membership ("Room membership"),
// sending and reading events ("Events"), history pagination and event
// context, room aliases and the published room directory, the room
// summary (MSC3266, summary.go), typing notifications, receipts and
// fully read markers.
//
// It sits on top of the room event graph: writes go through
// rooms.Service (which applies the auth rules), reads come straight from
// storage. What the sync engine owns (who is joined where) reaches it
// through the narrow Members interface; what /sync needs from it
// (typing, receipts) it exposes as methods on API.
//
// Pagination tokens are sync tokens (stream.Token): a token's Events
// part P lies between the events at stream positions <= P and > P, so
// dir=b from P returns events at P and below, dir=f events above P.
package roomapi
