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
// queue, a bounded lossy queue and a pending world delta per channel
// (see "Deltas"), reliable first (while a reliable message waits, lossy
// ones wait behind it, so a joiner's snapshot comes before any live
// change), and a slow peer never delays anyone: Receive only appends to
// queues. A recipient whose channel has more than Config.SlowBytes
// (Config.LossySlowBytes for the lossy channel) buffered is not written
// to until it drains, which a Sender implementing DrainNotifier reports
// at once (otherwise the writer looks again every Config.Tick). The
// lossy limit is small (16 KiB): what sits in the SCTP buffer goes out
// late and whole, what waits here merges. Meanwhile its lossy messages
// coalesce: a newer user packet from the same sender on the same topic
// replaces the unsent one in place, world changes merge per key, and a
// full lossy queue drops its oldest message. A full reliable queue drops
// the message and reports the recipient through
// Config.OnReliableOverflow.
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
// message whose keys all lose is dropped silently; otherwise the part
// that won goes to everyone but the sender, whatever its destinations,
// in deltas (below); the message itself is never forwarded. If the
// winning part would grow the snapshot past Config.MaxWorldBytes the
// whole message is refused with ErrWorldFull; changes that shrink it are
// always accepted.
//
// # Deltas
//
// The server sends world changes as reliable or lossy user packets on
// topic WorldTopic+".delta", with an empty participant identity (from
// the server), each change on the channel it came in on. The payload has
// the snapshot's shape (below), canonical JSON, a delete carrying
// "deleted" instead of a value:
//
//	{"entries":{"<key>":{"by":"<identity>","ts":<ms>,"value":<json>},
//	            "<key>":{"by":"<identity>","deleted":true,"ts":<ms>}},"v":1}
//
// Each recipient has a pending delta per channel, at most one change per
// key, merged last-writer-wins as the state is; its writer, when it
// wakes, sends all of it as one packet (split into several, each within
// Config.MaxPacketBytes, when it is larger; an entry too large for a
// packet of its own goes alone). A lossy delta is also paced: after one
// is written the next waits until Config.LossyDeltaInterval (3 ms) has
// passed or it is full, one more entry of its average size taking it
// past Config.DeltaFillBytes (what one SCTP packet carries), whichever
// comes first; lossy user packets queued behind it wait with it.
// Reliable messages do not. So the batch adapts to the load: under light load a
// delta holds one change and goes out at once, with nothing to wait
// for; while changes stream in they merge into about one packet per
// interval, not one per change; when they come faster than the
// recipient's channel takes them, a slow recipient gets the latest of
// each key, not a backlog. Every delta costs the server and the client
// the same SCTP and DTLS work and a share of an acknowledgement whatever
// it holds: in the SFU's benchmark 50 peers sending 30 poses a second
// cost each recipient about 280 deltas a second, not 1,470 packets.
//
// A reliable change also retires an older lossy one pending for the same
// key; a lossy one never retires a reliable one, so the last reliable
// value still arrives if the lossy delta is lost. A delta carries every
// change pending when it is written, so it may overtake user packets
// queued before it, never fall behind one queued after it; only a
// joiner's snapshot always comes first. Deltas of the two channels may
// arrive in either order and lossy ones not at all, so clients apply each
// entry by the same last-writer-wins rule, keeping tombstones of deletes
// for a while. Clients may not send on the delta topic.
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
