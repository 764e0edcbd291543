// Package data relays LiveKit data packets among the participants of one
// room and keeps the room's AR/VR world state.
//
// # Relay
//
// LiveKit clients send a livekit.DataPacket protobuf on their publisher
// connection's "_reliable" or "_lossy" data channel; the SFU forwards it
// to each recipient's subscriber-connection channel of the same kind.
// Like livekit-server (pkg/rtc/participant.go, room.go) the Room
// overwrites the sender's identity and sid with the authenticated ones,
// routes to destination_identities (or the deprecated user.destination_sids)
// when given and otherwise to everyone but the sender, forwards user,
// chat, RPC, data-stream, DTMF and encrypted packets, refuses what only
// a server sends (speaker updates, transcriptions) and drops client
// metrics. A forwarded packet is encoded once and the bytes shared by
// all recipients.
//
// Each recipient has one writer goroutine draining a bounded reliable
// queue and a bounded lossy queue, reliable first (while a reliable
// message waits, lossy ones wait behind it, so a joiner's snapshot comes
// before any live change), and a slow peer never delays anyone: Receive
// only appends to queues. A recipient whose
// channel has more than Config.SlowBytes buffered is not written to until
// it drains. Meanwhile its lossy messages coalesce: a newer user packet
// from the same sender on the same topic replaces the unsent one in
// place (world changes are merged, see below), and a full lossy queue
// drops its oldest message. A full reliable queue drops the message and
// reports the recipient through Config.OnReliableOverflow.
//
// Oversized packets, packets over the sender's token-bucket rate,
// malformed protobuf and refused kinds are errors returned to the
// caller for that client alone; nothing is forwarded.
//
// # World messages
//
// A user packet on the topic Config.WorldTopic (default "plexus.world")
// carries a JSON world message as its payload:
//
//	{"ts": 1735000000000, "set": {"<key>": <any JSON>, ...}, "del": ["<key>", ...], "at": {"<key>": <ms>}}
//
// Its members:
//
//   - ts: the sender's clock, unix milliseconds, a non-negative integer.
//     Missing or 0: the server's clock. More than Config.MaxClockSkew ahead
//     of the server's clock: clamped to the server's clock, so one client
//     with a fast clock cannot own keys for ever.
//   - set: keys to set, each to any JSON value (null included) within
//     Matrix canonical JSON's range (spec appendices, "Canonical JSON"):
//     integers in ±(2^53-1), no fractions, no duplicate object keys. The
//     snapshot becomes a Matrix state event, where floats are refused;
//     send coordinates as scaled integers (millimetres) or strings.
//   - del: keys to delete.
//   - at: optional per-key stamps overriding ts for the keys named, which
//     must be in set or del. The server writes it when it merges queued
//     messages; clients may send it.
//
// Keys are 1 to 256 bytes of UTF-8; a key may not be both set and
// deleted in one message; the payload must be valid UTF-8. Unknown
// members are ignored.
//
// Each key is applied last-writer-wins by (stamp, then sender identity
// compared byte-wise); a write equal in both replaces the earlier one.
// Deletes leave tombstones, so an older set arriving after a newer delete
// loses; tombstones are forgotten after Config.TombstoneTTL, or oldest
// first past Config.MaxTombstones, and never appear in the snapshot. A
// message whose keys all lose is dropped silently; otherwise only the
// part that won is forwarded (re-encoded when part was lost or a stamp
// changed), to everyone but the sender whatever its destinations, with
// the sender's identity on the packet for the receiver's own
// tie-breaks. Clients should apply the same rule, since lossy packets
// may arrive out of order. If the winning part would grow the snapshot
// past Config.MaxWorldBytes the whole message is refused with
// ErrWorldFull; changes that shrink it are always accepted.
//
// # Snapshot
//
// The snapshot is the live state as Matrix canonical JSON (members in
// code point order at every level, values canonicalised on arrival), so
// equal states encode to equal bytes and the snapshot can be the content
// of a state event as it is:
//
//	{"entries":{"<key>":{"by":"<identity>","ts":<ms>,"value":<json>}},"v":1}
//
// A joining recipient receives it first, as a reliable user packet on
// topic WorldTopic+".snapshot" with an empty participant identity;
// clients may not send on that topic. Room.Snapshot returns it with a
// version counting applied changes, for the core to persist into the
// Matrix room; Room.LoadWorld merges a persisted one back in.
package data
