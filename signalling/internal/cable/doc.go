// Package cable is the realtime WebSocket connection: one per browser
// tab, window or device, speaking ActionCable's wire protocol so that the
// stock @rails/actioncable JavaScript consumer connects unchanged.
//
// # Connection
//
// GET Config.Path (default /_plexus/cable) upgrades to a WebSocket with
// the subprotocol "actioncable-v1-json". The request is authenticated
// before the upgrade, with an access token (Authorization: Bearer, or
// ?access_token=, Client-Server API "Using access tokens") or the session
// cookie; a request without valid credentials gets a plain HTTP 401 and
// the standard error body (M_MISSING_TOKEN, M_UNKNOWN_TOKEN), and a
// browser Origin not allowed by Config.AllowedOrigins a 403 M_FORBIDDEN.
// The connection is the user's device for its whole life: every channel
// acts as that user and device.
//
// The session cookie (POST /_plexus/client/v1/session with an access
// token sets it; DELETE clears it) holds the access token sealed with
// AES-256-GCM; it is HttpOnly, SameSite=Strict and Path=/. A cookie that
// does not open under the key is M_UNKNOWN_TOKEN.
//
// # Frames
//
// Server to consumer, each a JSON text frame:
//
//	{"type":"welcome"}                                     first frame
//	{"type":"ping","message":1718000000}                   every 3 s
//	{"identifier":ID,"type":"confirm_subscription"}
//	{"identifier":ID,"type":"reject_subscription","message":{"errcode":..,"error":..}}
//	{"identifier":ID,"message":{...}}                      a channel message
//	{"type":"disconnect","reason":R,"reconnect":true}      R: server_restart, slow_consumer
//
// Consumer to server: {"command":"subscribe"|"unsubscribe","identifier":ID}
// and {"command":"message","identifier":ID,"data":DATA}, where ID is the
// JSON text of the subscription's parameters and DATA the JSON text of
// {"action": ..., ...}. As in ActionCable, a command that cannot be run
// (bad JSON, unknown identifier, repeated subscribe) is ignored;
// unsubscribe is not answered, and nothing is sent for an identifier
// after its unsubscribe is read.
//
// # SyncChannel
//
// Identifier {"channel":"SyncChannel","since":TOKEN?,"filter":FILTER?}
// (filter: a filter ID, or a filter object or its text, as /sync's
// filter parameter). It delivers everything GET /sync would, from the
// same engine, pushed as it is stored:
//
//	{"type":"sync","next_batch":TOKEN,"sync":<a /sync response body>}
//
// Without since the first message is the initial sync, sent even when
// empty; after it, and from a given since, a message is sent only when a
// response carries something (as a long-poll would return). Each
// message's sync covers (previous next_batch, next_batch], so a consumer
// that reconnects and subscribes with the next_batch of the last message
// it handled gets every later update exactly once: nothing lost, nothing
// repeated. Timelines follow the filter exactly as /sync's do: when
// more events arrived since the token than the timeline limit (10 by
// default), the timeline is limited and the client backfills with
// /messages from its prev_batch. perform("resume", {since}) restarts the channel from since on
// the same subscription. A malformed since rejects the subscription
// (M_INVALID_PARAM). A failed sync sends {"type":"error","action":"sync",
// "errcode","error"} and is retried at the next update.
//
// # RoomChannel
//
// Identifier {"channel":"RoomChannel","room_id":ROOM,"since":TOKEN?}.
// Rejected (M_FORBIDDEN) unless RoomActions.CanSee. It delivers the
// room's part of sync, with the same token rules as SyncChannel; its
// first message without a token has the default timeline limit (10),
// every later one (and the first from a token) up to 1000 events, so a
// consumer that falls a little behind still misses nothing:
//
//	{"type":"room","room_id":..,"membership":"join"|"leave"|"invite",
//	 "next_batch":..,"summary","state","timeline","ephemeral",
//	 "account_data","unread_notifications" | "invite_state"}
//
// The room channel never carries (nor acknowledges) to-device messages,
// so its timeline events lack unsigned.transaction_id; the ack of a send
// gives the event ID instead. Actions, each answered on the same
// identifier with {"type":"ack","action",..,"txn_id"?,"event_id"?} or
// {"type":"error","action",..,"txn_id"?,"errcode","error"}:
//
//	send_message {type? (m.room.message), content, txn_id?}
//	typing       {typing, timeout? (ms)}
//	receipt      {receipt_type? (m.read), event_id}
//	resume       {since}
//
// # Concurrency and flow control
//
// Per connection (tailscale derp's model): the HTTP handler's goroutine
// reads and runs commands in order; one writer goroutine drains a queue
// of encoded frames bounded by Config.QueueSize; each subscription is one
// goroutine that, when idle, is blocked on the user's stream.Hub
// subscription. One heartbeat goroutine pings every connection. A
// subscription that finds its connection's queue full closes the
// connection with {"type":"disconnect","reason":"slow_consumer",
// "reconnect":true} (best effort): a slow consumer never delays the
// others, and it resumes from its last next_batch. A subscription's
// message is encoded straight into its frame, once per wake-up: however
// many events arrived since the last one, they share a frame.
package cable
