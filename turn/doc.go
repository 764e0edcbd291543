// Package turn is Plexus's embedded TURN relay (RFC 8656, RFC 5766), built
// on pion/turn, for the clients behind symmetric NATs and firewalls that
// cannot reach a call's other side directly.
//
// It listens for TURN over UDP and TCP on one address and over TLS on
// another (TURN over TLS on port 443 gets through the strictest
// firewalls), authenticates with the time-limited TURN REST credentials
// that /voip/turnServer hands out (internal/turncred), and is safe by
// default:
//
//   - Peers: relaying to loopback, unspecified, private, CGNAT,
//     link-local (cloud metadata), multicast, broadcast, ULA, site-local,
//     6to4, Teredo and documentation addresses, and to IPv4-mapped and NAT64
//     forms of them, is refused (RFC 8656 section 21.1.2; the class of flaw
//     behind coturn's CVE-2020-26262). The check runs on CreatePermission and
//     ChannelBind (pion's PermissionHandler), on Connect (turn/internal/filter)
//     and again on every relayed datagram (turn/internal/relay), so no path
//     reaches a refused peer. Config.AllowPeers and DenyPeers adjust it; the
//     SFU's own addresses are always allowed.
//   - Quotas: allocations per user and in total (486 Allocation Quota
//     Reached, RFC 8656 section 7.2 rule 7), a per-allocation bandwidth cap,
//     a maximum allocation lifetime, a cap on TCP and TLS connections.
//   - Robustness: junk, responses and unknown methods are dropped before
//     pion parses them; a TCP connection that sends an invalid frame is
//     closed; the first frame (and TLS handshake) must arrive in 10 s.
//
// Only UDP relays over IPv4 are offered, as pion's server implements: an
// Allocate asking for a TCP relay (RFC 6062) or an IPv6 one is answered 442
// or 440, and Connect 437 (or 403 for a refused peer).
//
// Metrics (when Deps.Metrics is set) count active allocations, packets and
// bytes relayed each way, authentication failures by reason, refused peers
// and allocations; refusals are logged, rate-limited.
//
// pion handles the protocol: authentication, allocations, permissions,
// channels, refreshes. ChannelData over UDP, nearly all the traffic of a
// call, takes a fast path instead (relay.Index): once pion has bound a
// channel, its datagrams are relayed by the server's own code in both
// directions, still through the relay sockets' checks, without pion's
// per-packet allocations and locks.
//
// On Linux the UDP listener and every relay socket are served by one event
// loop (turn/internal/dgram: epoll and recvmmsg over sockets taken out of
// Go's poller), which runs the fast path and the per-datagram checks for
// all of them: at a call's packet rates the cost of relaying is waking up
// for each datagram, and one loop wakes once where Go's goroutine per
// socket woke several threads. Elsewhere the sockets stay on Go's
// networking, with the same checks.
//
// The machinery lives in turn/internal: peer (the policy, pure), filter
// (the pre-parse check, pure), relay (relay sockets: policy per packet,
// bandwidth cap, counters, lifetime; the ChannelData fast path), dgram
// (the UDP sockets' event loop) and pionlog (pion's logs into slog).
package turn
