package turn

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"

	pionturn "github.com/pion/turn/v4"

	"github.com/plexus-chat/plexus/internal/turncred"
	"github.com/plexus-chat/plexus/turn/internal/filter"
	"github.com/plexus-chat/plexus/turn/internal/peer"
)

// This file holds the hooks pion calls: authentication, quota, peer
// permission and allocation events, and the pre-parse filter.

// authenticate is pion's AuthHandler: the long-term credential mechanism
// (RFC 8489 section 9.2) with TURN REST passwords (draft-uberti-behave-
// turn-rest-00 section 2.2). It returns the key MD5(username:realm:
// password); pion checks MESSAGE-INTEGRITY with it and reports the verdict
// to OnAuth.
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	if realm != s.cfg.Realm {
		s.authFailed("wrong_realm", username, src)
		return nil, false
	}
	password, err := turncred.Verify(s.cfg.Secret, username, s.now())
	switch {
	case errors.Is(err, turncred.ErrExpired):
		s.authFailed("expired", username, src)
		return nil, false
	case err != nil:
		s.authFailed("malformed", username, src)
		return nil, false
	}
	if s.hooks.AllowUser != nil && !s.hooks.AllowUser(userOf(username)) {
		s.authFailed("user_refused", username, src)
		return nil, false
	}
	return pionturn.GenerateAuthKey(username, realm, password), true
}

func (s *Server) authFailed(reason, username string, src net.Addr) {
	s.metrics.authFailure(reason)
	s.logLimited("turn_auth_"+reason, "TURN authentication refused", "reason", reason,
		"username", username, "client", src.String())
}

// userOf returns the user a REST username belongs to: the part after the
// expiry, or the whole username when there is none.
func userOf(username string) string {
	if _, user, err := turncred.Expiry(username); err == nil && user != "" {
		return user
	}
	return username
}

// srcKey names a client transport address across listeners.
func srcKey(a net.Addr) string { return a.Network() + " " + a.String() }

// reserve is pion's QuotaHandler, called before each new allocation; a
// refusal is answered 486 (Allocation Quota Reached).
func (s *Server) reserve(username, _ string, src net.Addr) bool {
	ok, full := s.acct.reserve(userOf(username), srcKey(src))
	if !ok {
		s.metrics.refuse(full)
		s.logLimited("turn_quota_"+full, "TURN allocation refused: quota reached", "quota", full,
			"user", userOf(username), "client", src.String())
	}
	return ok
}

// permit is pion's PermissionHandler, called for each peer address of
// CreatePermission and ChannelBind (RFC 8656 sections 9.2 and 11.2).
func (s *Server) permit(client net.Addr, peerIP net.IP) bool {
	ip, ok := netip.AddrFromSlice(peerIP)
	if !ok {
		s.deniedPeer("permission", client, netip.Addr{}, peer.DeniedInvalid)
		return false
	}
	return s.permitIP("permission", client, ip)
}

func (s *Server) permitIP(stage string, client net.Addr, ip netip.Addr) bool {
	v := s.policy.CheckIP(ip)
	if v.OK() && s.hooks.PermitPeer != nil && !s.hooks.PermitPeer(client, ip) {
		v = peer.DeniedByRule
	}
	if !v.OK() {
		s.deniedPeer(stage, client, ip, v)
		return false
	}
	return true
}

func (s *Server) deniedPeer(stage string, client net.Addr, ip netip.Addr, v peer.Verdict) {
	s.metrics.deniedPeer(stage)
	s.logLimited("turn_peer_"+stage, "TURN peer refused", "stage", stage, "client", client.String(),
		"peer", ip.String(), "reason", v.String())
}

// deniedPacket is called by relay sockets for each datagram the policy
// refuses; with permissions checked first this is rare (a peer spraying
// a relay port, or an SFU address at another port), so it logs at debug.
func (s *Server) deniedPacket(p netip.AddrPort, v peer.Verdict, toPeer bool) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	if ok, _ := s.limiter.Allow("turn_packet"); ok {
		s.log.Debug("TURN datagram refused", "peer", p.String(), "to_peer", toPeer, "reason", v.String())
	}
}

// inspect runs the pre-parse filter on a message from a client.
func (s *Server) inspect(b []byte, src net.Addr) filter.Verdict {
	v := filter.Inspect(b, func(ip netip.Addr) bool { return s.permitIP("connect", src, ip) })
	if v.Action != filter.Pass {
		switch v.Reason {
		case filter.ReasonTransport, filter.ReasonFamily:
			s.metrics.refuse(string(v.Reason))
		case filter.ReasonConnectDenied, filter.ReasonConnect:
			// counted by permitIP when refused
		default:
			s.metrics.drop(v.Reason)
		}
	}
	return v
}

// events are pion's allocation lifecycle callbacks.
func (s *Server) events() pionturn.EventHandler {
	return pionturn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, username, _, method string, verdict bool) {
			if !verdict {
				s.authFailed("bad_integrity", username, src)
			}
		},
		OnAllocationCreated: func(src, _ net.Addr, _, username, _ string, relayAddr net.Addr, _ int) {
			// Counted in wg until deleted, so that Close waits for pion to
			// finish with it.
			s.wg.Add(1)
			s.acct.created(userOf(username), srcKey(src))
			s.metrics.created()
			s.log.Debug("TURN allocation created", "user", userOf(username), "client", src.String(), "relay", relayAddr.String())
		},
		OnAllocationDeleted: func(src, _ net.Addr, _, username, _ string) {
			if u, ok := src.(*net.UDPAddr); ok && s.fast != nil {
				s.fast.Drop(u.AddrPort())
			}
			s.acct.deleted(userOf(username))
			s.log.Debug("TURN allocation deleted", "user", userOf(username), "client", src.String())
			s.wg.Done()
		},
		OnAllocationError: func(src, _ net.Addr, _, _ string) {
			s.acct.abandon(srcKey(src))
		},
		// Channels of UDP clients join the fast path once pion has
		// granted them, and leave it when pion drops them.
		OnChannelCreated: func(src, _ net.Addr, _, _, _ string, relayAddr, peer net.Addr, ch uint16) {
			cl, ok1 := src.(*net.UDPAddr)
			p, ok2 := peer.(*net.UDPAddr)
			ra, ok3 := relayAddr.(*net.UDPAddr)
			if !ok1 || !ok2 || !ok3 || s.fast == nil {
				return // TCP and TLS clients stay on pion's path
			}
			if conn := s.gen.Lookup(uint16(ra.Port)); conn != nil {
				s.fast.Bind(cl.AddrPort(), ch, p.AddrPort(), conn)
			}
		},
		OnChannelDeleted: func(src, _ net.Addr, _, _, _ string, _, peer net.Addr, ch uint16) {
			cl, ok1 := src.(*net.UDPAddr)
			p, ok2 := peer.(*net.UDPAddr)
			if ok1 && ok2 && s.fast != nil {
				s.fast.Unbind(cl.AddrPort(), ch, p.AddrPort())
			}
		},
	}
}

// logLimited logs a warning of kind key at most a few times per interval.
func (s *Server) logLimited(key, msg string, args ...any) {
	ok, suppressed := s.limiter.Allow(key)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	s.log.Warn(msg, args...)
}
