// Package peer decides which peer addresses the TURN relay may send to.
//
// A relay that sends wherever a client asks is an open proxy into the
// operator's own network: the loopback interface, RFC 1918 ranges, cloud
// metadata services at 169.254.169.254. coturn's CVE-2020-26262 was that
// class of flaw, reached through 0.0.0.0 and [::1] and IPv4-mapped forms its
// checks missed. RFC 8656, section 21.1.2 ("Relaying to Local Addresses")
// and section 21.2.6 tell a server to refuse such peers by default.
//
// A Policy is pure data and pure functions: it is built once from the
// operator's --turn-allow-peer and --turn-deny-peer rules and the SFU's own
// addresses, and answers per IP (CreatePermission, ChannelBind and Connect,
// which carry only an IP's permission, RFC 8656 section 9) and per IP and
// port (each relayed packet).
package peer
