// Package relay makes the relay sockets of TURN allocations (RFC 8656,
// section 7.2: the relayed transport address) and is the last line of the
// relay's defences: every datagram an allocation sends to or receives from
// a peer passes through a Conn, which
//
//   - checks the peer against the peer policy, so that no path through the
//     TURN server, present or future, reaches a refused address even if a
//     permission was somehow granted;
//   - enforces the per-allocation bandwidth cap with a token bucket,
//     dropping what exceeds it as a congested link would;
//   - counts packets and bytes relayed;
//   - ends the allocation when its maximum lifetime has passed, by closing
//     the socket, which makes pion delete the allocation.
//
// The checks on datagrams from peers run in the socket's handler (see
// package dgram), before pion reads anything.
//
// Generator is pion's RelayAddressGenerator: it binds sockets in the
// configured port range and caps how many exist at once. Index is the
// ChannelData fast path for UDP clients (see its comment).
package relay
