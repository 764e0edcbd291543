package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/internal/pionlog"
	"github.com/plexus-chat/plexus/turn/internal/dgram"
	"github.com/plexus-chat/plexus/turn/internal/peer"
	"github.com/plexus-chat/plexus/turn/internal/relay"
)

// Config is what the operator decides.
type Config struct {
	// Realm is the STUN realm (RFC 8489 section 9.2): the server name.
	Realm string
	// Secret is the TURN REST shared secret, the one /voip/turnServer
	// mints credentials with. Required.
	Secret []byte

	// Listen is the host:port of the UDP and TCP listeners; empty disables
	// both. The host must be an IP literal or empty (all interfaces).
	// Port 0 picks a free port, the same one for UDP and TCP.
	Listen string
	// TLSListen is the host:port of the TURN-over-TLS listener; empty
	// disables it. TLSCertificate is then required.
	TLSListen      string
	TLSCertificate *tls.Certificate

	// ExternalIP is the address put in relayed transport addresses and
	// URIs, for a server behind NAT. Zero: the listen address, or, when
	// that is unspecified, the host's first global unicast IPv4 address.
	ExternalIP netip.Addr
	// RelayPortMin and RelayPortMax bound the relay ports; both zero lets
	// the kernel pick.
	RelayPortMin, RelayPortMax uint16

	// AllowPeers and DenyPeers adjust the peer policy (see package peer).
	AllowPeers, DenyPeers []netip.Prefix
	// SFU lists the SFU's own transport addresses, always allowed.
	SFU []netip.AddrPort

	// UserQuota and TotalQuota cap allocations per user and in total;
	// 0 is no cap.
	UserQuota, TotalQuota int
	// MaxBitrate caps each allocation's relayed traffic, both directions
	// together, in bits a second; 0 is no cap.
	MaxBitrate int64
	// MaxLifetime ends an allocation this long after it was made, however
	// often it is refreshed; 0 never.
	MaxLifetime time.Duration
	// MaxConns caps concurrent TCP and TLS connections; 0 means
	// 4*TotalQuota+64, or 10,000 when TotalQuota is 0.
	MaxConns int
}

// Deps are the server's collaborators and policy hooks. Every field may be
// left zero.
type Deps struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Now is the clock that credentials expire by; nil means time.Now.
	Now func() time.Time
	// PermitPeer is consulted after the built-in peer policy admits a peer
	// on CreatePermission, ChannelBind or Connect; it can only refuse
	// more. nil admits.
	PermitPeer func(client net.Addr, peer netip.Addr) bool
	// AllowUser is consulted for each authenticated request after the
	// credentials check out, with the user part of the username (the
	// Matrix user ID); it lets the caller cut off deactivated users before
	// their credentials expire. nil allows.
	AllowUser func(user string) bool
}

// Server is a running TURN relay.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	hooks   Deps
	policy  *peer.Policy
	gen     *relay.Generator
	stats   relay.Stats
	acct    *accounts
	metrics *metrics
	limiter *pionlog.Limiter
	conns   *connSet
	pion    *pionturn.Server

	loop      *dgram.Loop // serves the UDP sockets; nil: the portable path
	udp       *packetConn
	fast      *relay.Index // ChannelData fast path of the UDP listener
	tcp, tlsL *listener
	uris      []string

	// wg counts listener loops, TCP connections, relay sockets and live
	// allocations; Close waits for it.
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// portableSockets, set by tests before New, serves the UDP sockets on Go's
// networking even where package dgram has an event loop, so that the
// portable path is tested on Linux too.
var portableSockets = false

// closeTimeout bounds how long Close waits for pion's goroutines; past it,
// Close reports an error rather than hanging shutdown.
const closeTimeout = 10 * time.Second

// New opens the listeners and starts serving. The caller must Close it.
func New(cfg Config, deps Deps) (*Server, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("turn: no shared secret")
	}
	if cfg.Realm == "" {
		return nil, errors.New("turn: no realm")
	}
	if cfg.Listen == "" && cfg.TLSListen == "" {
		return nil, errors.New("turn: no listener enabled")
	}
	if cfg.TLSListen != "" && cfg.TLSCertificate == nil {
		return nil, errors.New("turn: TLS listener without a certificate")
	}
	s := &Server{
		cfg:     cfg,
		log:     deps.Logger,
		now:     deps.Now,
		hooks:   deps,
		policy:  peer.New(peer.Rules{Allow: cfg.AllowPeers, Deny: cfg.DenyPeers, SFU: cfg.SFU}),
		limiter: pionlog.NewLimiter(5, 10*time.Second, nil),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.acct = newAccounts(cfg.UserQuota, cfg.TotalQuota, s.now)
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = 10_000
		if cfg.TotalQuota > 0 {
			maxConns = 4*cfg.TotalQuota + 64
		}
	}
	s.conns = newConnSet(maxConns)

	bindIP, relayIP, err := relayAddrs(cfg)
	if err != nil {
		return nil, err
	}
	s.gen = &relay.Generator{
		BindIP:      bindIP,
		RelayIP:     relayIP,
		MinPort:     cfg.RelayPortMin,
		MaxPort:     cfg.RelayPortMax,
		Policy:      s.policy,
		RateBytes:   cfg.MaxBitrate / 8,
		MaxLifetime: cfg.MaxLifetime,
		MaxSockets:  cfg.TotalQuota,
		Stats:       &s.stats,
		Track:       s.track,
		Denied:      s.deniedPacket,
	}
	if err := s.gen.Validate(); err != nil {
		return nil, fmt.Errorf("turn: %w", err)
	}
	if s.metrics, err = newMetrics(deps.Metrics, s); err != nil {
		return nil, err
	}

	if !portableSockets {
		if s.loop, err = dgram.NewLoop(); err != nil {
			s.metrics.unregister()
			return nil, fmt.Errorf("turn: %w", err)
		}
		s.gen.Loop = s.loop
	}
	if err := s.listen(); err != nil {
		s.closeSockets()
		s.metrics.unregister()
		return nil, err
	}
	s.uris = uris(cfg, relayIP, s.UDPAddr(), s.TCPAddr(), s.TLSAddr())

	pc := pionturn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authenticate,
		QuotaHandler:  s.reserve,
		EventHandler:  s.events(),
		LoggerFactory: &pionlog.Factory{Logger: s.log, Limiter: s.limiter},
	}
	if s.udp != nil {
		pc.PacketConnConfigs = append(pc.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn: s.udp, RelayAddressGenerator: s.gen, PermissionHandler: s.permit,
		})
	}
	for _, l := range []*listener{s.tcp, s.tlsL} {
		if l != nil {
			pc.ListenerConfigs = append(pc.ListenerConfigs, pionturn.ListenerConfig{
				Listener: l, RelayAddressGenerator: s.gen, PermissionHandler: s.permit,
			})
		}
	}
	// From here each listener's loop is pion's, and ends (releasing its
	// count) when the listener closes.
	s.wg.Add(len(pc.PacketConnConfigs) + len(pc.ListenerConfigs))
	if s.pion, err = pionturn.NewServer(pc); err != nil {
		// pion fails only on a bad configuration, before it starts any
		// loop; the counts stay, unused, on a Server that is dropped.
		s.closeSockets()
		s.metrics.unregister()
		return nil, fmt.Errorf("turn: %w", err)
	}
	s.log.Info("TURN relay listening", "uris", s.uris, "relay_ip", relayIP.String(),
		"relay_ports", portRange(cfg), "realm", cfg.Realm)
	return s, nil
}

// listen opens the sockets. With port 0, TCP takes the port UDP got, so
// that one URI port serves both.
func (s *Server) listen() error {
	if s.cfg.Listen != "" {
		host, port, err := net.SplitHostPort(s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("turn: listen address %q: %w", s.cfg.Listen, err)
		}
		var lastErr error
		for range 8 {
			udp, err := net.ListenPacket("udp", s.cfg.Listen)
			if err != nil {
				return fmt.Errorf("turn: %w", err)
			}
			tcpAddr := net.JoinHostPort(host, strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port))
			tcp, err := net.Listen("tcp", tcpAddr)
			if err != nil {
				udp.Close()
				lastErr = err
				if port == "0" {
					continue // another process has that TCP port: pick again
				}
				return fmt.Errorf("turn: %w", err)
			}
			if s.udp, err = newPacketConn(udp.(*net.UDPConn), s); err != nil {
				tcp.Close()
				return fmt.Errorf("turn: %w", err)
			}
			s.fast = relay.NewIndex(s.udp.sock)
			s.tcp = &listener{Listener: tcp, s: s}
			break
		}
		if s.udp == nil {
			return fmt.Errorf("turn: no port free for both UDP and TCP: %w", lastErr)
		}
	}
	if s.cfg.TLSListen != "" {
		l, err := net.Listen("tcp", s.cfg.TLSListen)
		if err != nil {
			return fmt.Errorf("turn: %w", err)
		}
		s.tlsL = &listener{Listener: l, s: s, tls: &tls.Config{
			Certificates: []tls.Certificate{*s.cfg.TLSCertificate},
			MinVersion:   tls.VersionTLS12,
		}}
	}
	return nil
}

// closeSockets closes what listen opened, and the loop, for a New that
// fails before pion owns the sockets.
func (s *Server) closeSockets() {
	if s.udp != nil {
		s.udp.Close()
	}
	s.loop.Close()
	for _, l := range []*listener{s.tcp, s.tlsL} {
		if l != nil {
			l.Listener.Close()
		}
	}
}

// relayAddrs picks the address relay sockets bind to and the one
// advertised. pion's server makes IPv4 relays only.
func relayAddrs(cfg Config) (bind, advertised netip.Addr, err error) {
	listen := cfg.Listen
	if listen == "" {
		listen = cfg.TLSListen
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return bind, advertised, fmt.Errorf("turn: listen address %q: %w", listen, err)
	}
	bind = netip.IPv4Unspecified()
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return bind, advertised, fmt.Errorf("turn: listen host %q must be an IP address", host)
		}
		if a = a.Unmap(); a.Is4() {
			bind = a
		}
	}
	switch {
	case cfg.ExternalIP.IsValid():
		advertised = cfg.ExternalIP.Unmap()
		if !advertised.Is4() {
			return bind, advertised, fmt.Errorf("turn: external IP %v: relays are IPv4 only", cfg.ExternalIP)
		}
	case !bind.IsUnspecified():
		advertised = bind
	default:
		if advertised, err = hostIPv4(); err != nil {
			return bind, advertised, err
		}
	}
	return bind, advertised, nil
}

// hostIPv4 returns the first global unicast IPv4 address of the host's
// interfaces, what a relay bound to 0.0.0.0 is most likely reached at.
func hostIPv4() (netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("turn: listing interface addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, errors.New("turn: no IPv4 address on this host to advertise for relays; set the external IP")
}

// uris lists the listeners that are enabled as TURN URIs (RFC 7065).
func uris(cfg Config, relayIP netip.Addr, udp, tcp, tlsAddr net.Addr) []string {
	host := func(a net.Addr) string {
		if cfg.ExternalIP.IsValid() {
			return cfg.ExternalIP.Unmap().String()
		}
		var ip netip.Addr
		switch a := a.(type) {
		case *net.UDPAddr:
			ip = a.AddrPort().Addr()
		case *net.TCPAddr:
			ip = a.AddrPort().Addr()
		}
		if !ip.IsValid() || ip.IsUnspecified() {
			ip = relayIP
		}
		return ip.Unmap().String()
	}
	hostPort := func(a net.Addr) string {
		_, port, _ := net.SplitHostPort(a.String())
		return net.JoinHostPort(host(a), port)
	}
	var out []string
	if udp != nil {
		out = append(out, "turn:"+hostPort(udp)+"?transport=udp")
	}
	if tcp != nil {
		out = append(out, "turn:"+hostPort(tcp)+"?transport=tcp")
	}
	if tlsAddr != nil {
		out = append(out, "turns:"+hostPort(tlsAddr)+"?transport=tcp")
	}
	return out
}

func portRange(cfg Config) string {
	if cfg.RelayPortMin == 0 {
		return "any"
	}
	return fmt.Sprintf("%d-%d", cfg.RelayPortMin, cfg.RelayPortMax)
}

// URIs returns the TURN URIs of the enabled listeners, for
// /voip/turnServer: turn:host:port?transport=udp, ...?transport=tcp and
// turns:host:port?transport=tcp.
func (s *Server) URIs() []string { return append([]string(nil), s.uris...) }

// UDPAddr returns the UDP listener's address, or nil when disabled.
func (s *Server) UDPAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// TCPAddr returns the TCP listener's address, or nil when disabled.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// TLSAddr returns the TLS listener's address, or nil when disabled.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsL == nil {
		return nil
	}
	return s.tlsL.Addr()
}

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return s.acct.liveCount() }

// Close stops the listeners, ends every allocation and connection, and
// waits for pion's goroutines. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.pion.Close()
		s.conns.closeAll()
		done := make(chan struct{})
		go func() {
			s.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeTimeout):
			err = errors.Join(err, fmt.Errorf("turn: %d allocations still open after %v", s.acct.liveCount(), closeTimeout))
		}
		// Last: pion has closed its sockets by now, and the loop closes
		// any left.
		s.loop.Close()
		s.metrics.unregister()
		s.closeErr = err
	})
	return s.closeErr
}

// track counts a relay socket until it is closed and its reader gone.
func (s *Server) track() func() {
	s.wg.Add(1)
	return s.wg.Done
}
