package main

import (
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/internal/config"
	"github.com/plexus-chat/plexus/internal/keyring"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/turncred"
	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/signalling"
)

// sfuSecretFile holds the generated secret that signs SFU access tokens.
const sfuSecretFile = "sfu.secret"

// sfuPrefix is where the SFU's LiveKit signalling is mounted on the client
// listener; LiveKit clients append /rtc to the URL they are given.
const sfuPrefix = "/livekit/sfu"

// sfuSecret returns --sfu-api-secret, or the secret in <data>/sfu.secret,
// generating it on first start.
func sfuSecret(cfg config.Config, log *slog.Logger) (string, error) {
	if cfg.SFUAPISecret != "" {
		return cfg.SFUAPISecret, nil
	}
	raw, generated, err := keyring.Secret(cfg.DataDir, sfuSecretFile, 32)
	if err != nil {
		return "", err
	}
	if generated {
		log.Info("generated an SFU token secret", "file", sfuSecretFile)
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// startSFU starts the SFU, mounts its signalling on mux and adopts it into
// cs. Participants get the embedded TURN relay as ICE server, with
// credentials minted for their identity at join; world snapshots persist
// through world.
func startSFU(cfg config.Config, secret string, log *slog.Logger, reg *prometheus.Registry, cs *components,
	turnCreds signalling.TURNConfig, world sfu.WorldStore, mux server.Router) (*sfu.Server, error) {
	var metrics prometheus.Registerer
	if reg != nil { // a nil *Registry in the interface would not read as nil
		metrics = reg
	}
	external := make([]string, len(cfg.SFUExternalIPs))
	for i, a := range cfg.SFUExternalIPs {
		external[i] = a.String()
	}
	srv, err := sfu.New(sfu.Config{
		APIKey:      cfg.SFUAPIKey,
		APISecret:   secret,
		ListenIP:    cfg.SFUListenIP,
		UDPPort:     cfg.SFUUDPPort,
		TCPPort:     cfg.SFUTCPPort,
		ExternalIPs: external,
		// A server whose clients reach it over loopback (a developer's
		// machine, the tests) must offer loopback candidates too: there may
		// be no other interface the browser and the SFU share.
		IncludeLoopback: cfg.LoopbackOnly() || isLoopbackIP(cfg.SFUListenIP),
		// The token service grants roomCreate to this server's users
		// only (lk-jwt-service's full access): users of other servers
		// join calls that are running, they do not start rooms here.
		RequireRoomCreate: true,
	}, sfu.Deps{
		Logger:     log.With("component", "sfu"),
		Metrics:    metrics,
		ICEServers: iceServers(turnCreds),
		World:      world,
	})
	if err != nil {
		return nil, err
	}
	cs.adopt("sfu", srv)
	mux.Handle(sfuPrefix+"/", http.StripPrefix(sfuPrefix, srv.Handler()))
	attrs := []any{"udp", addrString(srv.UDPAddr())}
	if a := srv.TCPAddr(); a != nil {
		attrs = append(attrs, "tcp", a.String())
	}
	log.Info("SFU ready", attrs...)
	return srv, nil
}

// iceServers hands each SFU participant fresh TURN REST credentials for
// the embedded relay, as GET /voip/turnServer does for 1:1 calls.
func iceServers(t signalling.TURNConfig) func(identity string) []*livekit.ICEServer {
	if len(t.Secret) == 0 || len(t.URIs) == 0 {
		return nil
	}
	ttl := t.TTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	return func(identity string) []*livekit.ICEServer {
		user, pass := turncred.Mint(t.Secret, identity, ttl, time.Now())
		return []*livekit.ICEServer{{Urls: t.URIs, Username: user, Credential: pass}}
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
