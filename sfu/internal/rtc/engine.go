package rtc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/plexus-chat/plexus/internal/pionlog"
)

// EngineConfig configures the media sockets and the peer connections.
type EngineConfig struct {
	ListenIP        string
	UDPPort         int
	TCPPort         int // -1 disables ICE-TCP
	ExternalIPs     []string
	IncludeLoopback bool
	// PublisherInterceptors and SubscriberInterceptors are appended to
	// every publisher / subscriber peer connection's registry.
	PublisherInterceptors  []interceptor.Factory
	SubscriberInterceptors []interceptor.Factory
	Logger                 *slog.Logger
}

// Engine makes the server's peer connections. Every connection shares
// one UDP port (an ICE UDP mux, so one port serves all media) and one
// ICE-TCP listener.
type Engine struct {
	cfg    EngineConfig
	se     webrtc.SettingEngine
	tcp    net.Listener
	udpMux ice.UDPMux
	tcpMux ice.TCPMux
	// udpAddr is what UDPAddr reports.
	udpAddr net.Addr
}

// Audio and video payload types: the values browsers use, so answers need
// no remapping in the common case. No RTX: retransmissions go on the
// original SSRC both ways (agreed with the media engine).
const (
	ptOpus  = 111
	ptRED   = 63
	ptVP8   = 96
	ptVP9   = 98
	ptH264  = 125
	ptH264b = 108
	ptH264c = 123
	ptAV1   = 45
)

// NewEngine opens the media sockets.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	e := &Engine{cfg: cfg}
	lf := &pionlog.Factory{Logger: cfg.Logger, Limiter: pionlog.NewLimiter(5, 10*time.Second, nil)}
	ip := net.ParseIP(cfg.ListenIP)
	if cfg.ListenIP != "" && ip == nil {
		return nil, fmt.Errorf("rtc: bad listen IP %q", cfg.ListenIP)
	}
	if err := e.listenUDP(ip, lf); err != nil {
		return nil, err
	}
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if cfg.TCPPort >= 0 {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: cfg.TCPPort})
		if err != nil {
			_ = e.udpMux.Close()
			return nil, fmt.Errorf("rtc: ICE-TCP port: %w", err)
		}
		e.tcp = ln
		e.tcpMux = webrtc.NewICETCPMux(lf.NewLogger("tcpmux"), ln, 32)
		e.se.SetICETCPMux(e.tcpMux)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	e.se.SetICEUDPMux(e.udpMux)
	e.se.SetNetworkTypes(types)
	e.se.LoggerFactory = lf
	e.se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	// A server has no use for mDNS: it would open a multicast socket per
	// peer connection and hide the host address.
	e.se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	e.se.DisableActiveTCP(true)
	e.se.SetICETimeouts(10*time.Second, 20*time.Second, 2*time.Second)
	if len(cfg.ExternalIPs) > 0 {
		// 1:1 NAT: the external IPs replace the host candidates' address.
		if err := e.se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.ExternalIPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("rtc: external IPs: %w", err)
		}
	}
	return e, nil
}

// listenUDP opens the media UDP port. Bound to one IP it is one socket
// under one mux. Bound to every interface it is one socket per interface
// address on the same port: a single socket on the unspecified address
// cannot tell which local address a packet came in on, and so could not
// name it in a host candidate (pion's UDPMuxDefault warns of exactly that).
func (e *Engine) listenUDP(ip net.IP, lf *pionlog.Factory) error {
	if ip != nil && !ip.IsUnspecified() {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: e.cfg.UDPPort})
		if err != nil {
			return fmt.Errorf("rtc: media UDP port: %w", err)
		}
		_ = udp.SetReadBuffer(udpBuffer)
		_ = udp.SetWriteBuffer(udpBuffer)
		e.udpAddr = udp.LocalAddr()
		e.udpMux = webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), udp)
		return nil
	}
	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithLogger(lf.NewLogger("udpmux")),
		ice.UDPMuxFromPortWithReadBufferSize(udpBuffer),
		ice.UDPMuxFromPortWithWriteBufferSize(udpBuffer),
		ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6),
	}
	if e.cfg.IncludeLoopback {
		opts = append(opts, ice.UDPMuxFromPortWithLoopback())
	}
	mux, err := ice.NewMultiUDPMuxFromPort(e.cfg.UDPPort, opts...)
	if err != nil {
		return fmt.Errorf("rtc: media UDP port: %w", err)
	}
	port := e.cfg.UDPPort
	if addrs := mux.GetListenAddresses(); len(addrs) > 0 {
		if a, ok := addrs[0].(*net.UDPAddr); ok {
			port = a.Port
		}
	}
	e.udpAddr = &net.UDPAddr{IP: net.IPv6unspecified, Port: port}
	e.udpMux = mux
	return nil
}

// udpBuffer is the media sockets' kernel buffer size: a burst of key
// frames to many subscribers must not overflow the default (~200 KiB).
const udpBuffer = 4 << 20

// UDPAddr is the media UDP port's address (the unspecified address with
// the port when bound to every interface).
func (e *Engine) UDPAddr() net.Addr { return e.udpAddr }

// TCPAddr is the ICE-TCP address, nil if disabled.
func (e *Engine) TCPAddr() net.Addr {
	if e.tcp == nil {
		return nil
	}
	return e.tcp.Addr()
}

// Close closes the media sockets.
func (e *Engine) Close() error {
	var errs []error
	if e.tcpMux != nil {
		errs = append(errs, e.tcpMux.Close())
	}
	errs = append(errs, e.udpMux.Close())
	return errors.Join(errs...)
}

func mediaEngine() (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	videoFB := []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: webrtc.TypeRTCPFBTransportCC},
		{Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
	}
	audioFB := []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}
	codecs := []struct {
		kind webrtc.RTPCodecType
		c    webrtc.RTPCodecParameters
	}{
		{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecParameters{PayloadType: ptOpus, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: audioFB}}},
		{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecParameters{PayloadType: ptRED, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: "audio/red", ClockRate: 48000, Channels: 2, SDPFmtpLine: strconv.Itoa(ptOpus) + "/" + strconv.Itoa(ptOpus)}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: ptVP8, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: ptH264, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: videoFB,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: ptH264b, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: videoFB,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: ptH264c, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: videoFB,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: ptVP9, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, RTCPFeedback: videoFB, SDPFmtpLine: "profile-id=0"}}},
		{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{PayloadType: ptAV1, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, RTCPFeedback: videoFB}}},
	}
	for _, c := range codecs {
		if err := m.RegisterCodec(c.c, c.kind); err != nil {
			return nil, fmt.Errorf("rtc: codec %s: %w", c.c.MimeType, err)
		}
	}
	exts := []struct {
		uri   string
		kinds []webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
		{sdp.SDESRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
		{sdp.SDESRepairRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
		{sdp.AudioLevelURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}},
		{sdp.TransportCCURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
		{sdp.ABSSendTimeURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
	}
	for _, x := range exts {
		for _, k := range x.kinds {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: x.uri}, k); err != nil {
				return nil, fmt.Errorf("rtc: header extension %s: %w", x.uri, err)
			}
		}
	}
	return m, nil
}

// NewPublisherPC makes the peer connection a client publishes on: the
// client offers, the server answers. Its interceptors generate NACKs,
// receiver reports and transport-wide congestion control feedback.
func (e *Engine) NewPublisherPC() (*webrtc.PeerConnection, error) {
	m, err := mediaEngine()
	if err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, fmt.Errorf("rtc: nack generator: %w", err)
	}
	reg.Add(gen)
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, fmt.Errorf("rtc: reports: %w", err)
	}
	tw, err := twcc.NewSenderInterceptor()
	if err != nil {
		return nil, fmt.Errorf("rtc: twcc: %w", err)
	}
	reg.Add(tw)
	for _, f := range e.cfg.PublisherInterceptors {
		reg.Add(f)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(e.se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("rtc: publisher peer connection: %w", err)
	}
	return pc, nil
}

// NewSubscriberPC makes the peer connection a client receives on: the
// server offers. Its interceptors send sender reports and stamp
// transport-wide sequence numbers, and a GCC estimator (without a pacer:
// the forwarding path must not queue) reports the downlink estimate to
// onEstimate.
func (e *Engine) NewSubscriberPC(onEstimate func(bps int)) (*webrtc.PeerConnection, error) {
	m, err := mediaEngine()
	if err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, fmt.Errorf("rtc: reports: %w", err)
	}
	ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		// Start high enough for a 720p layer (~1.5 Mbit/s): without
		// probing GCC climbs only ~8 %/s, and a subscriber would watch
		// a lower layer for seconds after joining; loss or delay brings
		// the estimate down within a second.
		return gcc.NewSendSideBWE(
			gcc.SendSideBWEInitialBitrate(2_500_000),
			gcc.SendSideBWEMaxBitrate(20_000_000),
			gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("rtc: congestion control: %w", err)
	}
	ccf.OnNewPeerConnection(func(_ string, est cc.BandwidthEstimator) {
		if onEstimate != nil {
			est.OnTargetBitrateChange(onEstimate)
		}
	})
	// The estimator must see packets after the TWCC header extension
	// interceptor stamped them: the later an interceptor is added, the
	// earlier it runs on the write path, so it is added first.
	reg.Add(ccOnlyWithTWCC{ccf})
	hx, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		return nil, fmt.Errorf("rtc: twcc header extension: %w", err)
	}
	reg.Add(hx)
	for _, f := range e.cfg.SubscriberInterceptors {
		reg.Add(f)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(e.se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("rtc: subscriber peer connection: %w", err)
	}
	return pc, nil
}

// ccOnlyWithTWCC builds the congestion controller but binds it only to
// streams that negotiated transport-wide sequence numbers: GCC refuses
// every packet without them, which would silence a client that did not
// offer the extension.
type ccOnlyWithTWCC struct{ f *cc.InterceptorFactory }

func (c ccOnlyWithTWCC) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := c.f.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &ccInterceptor{Interceptor: i}, nil
}

type ccInterceptor struct{ interceptor.Interceptor }

func (c *ccInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	for _, x := range info.RTPHeaderExtensions {
		if x.URI == sdp.TransportCCURI {
			return c.Interceptor.BindLocalStream(info, w)
		}
	}
	return w
}
