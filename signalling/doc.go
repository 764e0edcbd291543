// Package signalling is the client side of Plexus: the Matrix
// Client-Server API over HTTP (accounts and sessions, rooms, /sync, the
// end-to-end encryption key and to-device relay, media, discovery and
// TURN credentials) and the realtime WebSocket connection that carries
// the same data to browser tabs and devices.
//
// [NewFeed] follows the event stream the room service writes; build it
// before the room service and give it to the service as its Listener.
// [New] then builds every endpoint over the feed, the room service and
// the store. The machinery lives in signalling/internal: endpoint (the
// HTTP edge: tokens, bodies, errors), accounts, roomapi, keys, media,
// syncer (the /sync engine), cable (the ActionCable WebSocket) and
// stream (sync tokens and wake-ups).
//
// With a [Federation] in Deps, the client side also reaches other
// servers: remote joins, remote users' keys, and EDUs both ways
// ([Signalling.HandleEDU] delivers those received; local typing,
// receipts, key changes and to-device messages for remote users are
// sent), all through the paths /sync already reads.
package signalling
