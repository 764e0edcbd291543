// Package filter looks at each message reaching the TURN listeners before
// pion does, and answers or drops the ones pion would get wrong or waste
// work on:
//
//   - datagrams that are neither STUN (RFC 8489, section 5) nor ChannelData
//     (RFC 8656, section 12.4), and STUN responses or unknown methods sent
//     to a server, are dropped;
//   - Allocate requests for a TCP relay (RFC 6062) or an IPv6 one are
//     answered 442 (Unsupported Transport Protocol) and 440 (Address Family
//     not Supported), RFC 8656 section 7.2 rules 3 and 4: pion would hand
//     out a UDP/IPv4 relay instead;
//   - Connect requests (RFC 6062, section 5.2) have their peer checked
//     against the peer policy like CreatePermission and ChannelBind, and are
//     answered 403 (Forbidden) when refused and 437 (Allocation Mismatch)
//     otherwise, since no TCP allocation can exist; ConnectionBind gets 400.
//
// Inspect is a pure function of the bytes and the policy, so it is fuzzed.
package filter
