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
// Locks: Room.mu and Participant.mu guard maps and flags only; nothing
// sends, calls pion or calls back while holding them.
package rtc
