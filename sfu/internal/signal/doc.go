// Package signal is the SFU's signalling edge: LiveKit's client protocol
// over a WebSocket.
//
// A client opens GET /rtc?access_token=…&auto_subscribe=1&protocol=N (the
// token may instead come as "Authorization: Bearer …"). The token is a
// LiveKit access token: an HS256 JWT whose issuer is the API key, signed
// with the API secret, carrying a "video" grant with roomJoin and the room
// name (livekit/protocol auth). /rtc/validate answers the same check over
// plain HTTP: 200 "success", or 401 with the reason, as livekit-server
// does, so SDKs can tell a bad token from a dead server.
//
// Frames are binary protobuf SignalRequest (client to server) and
// SignalResponse (server to client); a client that sends text frames is
// answered in protojson, also as livekit-server does. Per connection
// there is one reader loop (the HTTP handler's goroutine) and one writer
// goroutine draining a bounded queue (tailscale's derp model): a slow
// client is closed rather than allowed to hold anybody up. The writer
// also sends WebSocket pings; any frame or pong from the client extends
// the read deadline, so a client that goes silent for PingTimeout is
// dropped (LiveKit's Go SDK sends no application pings, browsers' SDKs
// do, and both answer WebSocket pings).
//
// Query attributes need the canUpdateOwnMetadata grant, as in
// livekit-server. The writer's queue is bounded in frames and in bytes.
// A Joiner that implements Checker refuses a connection with an HTTP
// status before the upgrade (404 for a room the token may not create).
//
// A malformed frame is answered with a RequestResponse (INVALID_REQUEST)
// to that client alone; a client that keeps sending them is closed.
package signal
