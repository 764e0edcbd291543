// Package rtc is the SFU's room layer: rooms, participants, their peer
// connections and LiveKit's signalling semantics on top of the media
// forwarding engine (sfu/internal/media) and the data relay
// (sfu/internal/data).
//
// Each participant has two peer connections, as LiveKit clients expect
// (livekit_rtc.proto, SignalTarget): a publisher connection on which the
// client offers and the server answers, carrying the client's tracks and
// its "_reliable" and "_lossy" data channels; and a subscriber connection
// on which the server offers, carrying the tracks it forwards and the
// server-created data channels of the same names. Subscriber
// renegotiation is serialised: while an offer waits for its answer,
// further changes only mark the connection for another round. A client
// that leaves an offer unanswered for Config.NegotiationTimeout (15 s, as
// livekit-server) is told to reconnect (LeaveRequest RECONNECT) and
// removed. An unsubscribe leaves its transceiver idle and the next
// subscription of the same kind reuses it, so the subscriber SDP does not
// grow with churn.
//
// A track is announced by AddTrackRequest (answered at once with
// TrackPublishedResponse and a "TR_" sid) and becomes visible to others
// when its media arrives on the publisher connection: the remote track is
// matched to the pending request by the msid track id (the client's cid),
// then by any simulcast codec cid, then by kind, as livekit-server does;
// further simulcast layers (RIDs q, h, f) join the same track by the
// transceiver's mid.
//
// Grants (livekit/protocol auth VideoGrant) are enforced per action:
// canPublish and canPublishSources on AddTrackRequest, canSubscribe on
// every subscription, canPublishData in the data relay, hidden by keeping
// the participant out of everyone else's JoinResponse, updates, speakers
// and subscriptions, and roomCreate (with Config.RequireRoomCreate) on
// starting a room. What one client can make the server hold is bounded:
// participants per room and per server, tracks per participant, the size
// of an AddTrackRequest (its TrackInfo goes to everyone), media sections
// per offer, remote ICE candidates per ICE generation and data channels
// per publisher connection. Every participant is sent a fresh token
// every Config.RefreshInterval (RefreshToken), as livekit-server does.
//
// Locks: Room.mu and Participant.mu guard maps and flags only; nothing
// sends, calls pion or calls back while holding them.
package rtc
