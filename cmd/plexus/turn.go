package main

import (
	"crypto/tls"
	"encoding/base64"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/internal/config"
	"github.com/plexus-chat/plexus/internal/keyring"
	"github.com/plexus-chat/plexus/internal/tlscert"
	"github.com/plexus-chat/plexus/signalling"
	"github.com/plexus-chat/plexus/turn"
)

// turnSecretFile holds the generated TURN REST secret inside the data
// folder.
const turnSecretFile = "turn.secret"

// startTURN starts the TURN relay configured in cfg and adopts it into cs,
// and returns what GET /voip/turnServer hands out: the shared secret and
// the URIs of the listeners that are enabled. With both TURN listeners
// disabled it starts nothing and returns no URIs, so the endpoint offers
// no relay. The server is returned for the operator page (nil when
// disabled).
func startTURN(cfg config.Config, log *slog.Logger, reg *prometheus.Registry, cs *components) (signalling.TURNConfig, *turn.Server, error) {
	if cfg.TURNListen == "" && cfg.TURNTLSListen == "" {
		log.Info("TURN relay disabled")
		return signalling.TURNConfig{}, nil, nil
	}
	secret, err := turnSecret(cfg, log)
	if err != nil {
		return signalling.TURNConfig{}, nil, err
	}
	var cert *tls.Certificate
	if cfg.TURNTLSListen != "" {
		c, err := tlscert.Load(tlscert.Config{
			CertFile: cfg.TURNTLSCert,
			KeyFile:  cfg.TURNTLSKey,
			DataDir:  cfg.DataDir,
			Hosts:    certHosts(cfg),
		})
		if err != nil {
			return signalling.TURNConfig{}, nil, err
		}
		if c.SelfSigned {
			log.Warn("TURN over TLS uses a self-signed certificate, which browsers refuse; set --turn-tls-cert and --turn-tls-key",
				"path", c.CertPath, "generated", c.Generated)
		}
		cert = &c.Certificate
	}
	var metrics prometheus.Registerer
	if reg != nil { // a nil *Registry in the interface would not read as nil
		metrics = reg
	}
	srv, err := turn.New(turn.Config{
		Realm:          cfg.ServerName,
		Secret:         secret,
		Listen:         cfg.TURNListen,
		TLSListen:      cfg.TURNTLSListen,
		TLSCertificate: cert,
		ExternalIP:     cfg.TURNExternalIP,
		RelayPortMin:   cfg.TURNRelayPorts.Min,
		RelayPortMax:   cfg.TURNRelayPorts.Max,
		AllowPeers:     cfg.TURNAllowPeers,
		DenyPeers:      cfg.TURNDenyPeers,
		SFU:            sfuRelayAddrs(cfg),
		UserQuota:      cfg.TURNUserQuota,
		TotalQuota:     cfg.TURNTotalQuota,
		MaxBitrate:     cfg.TURNMaxBitrate * 1000,
		MaxLifetime:    cfg.TURNMaxLifetime,
	}, turn.Deps{
		Logger:  log.With("component", "turn"),
		Metrics: metrics,
	})
	if err != nil {
		return signalling.TURNConfig{}, nil, err
	}
	cs.adopt("turn", srv)
	return signalling.TURNConfig{Secret: secret, URIs: srv.URIs()}, srv, nil
}

// turnSecret returns --turn-secret, or the secret in <data>/turn.secret,
// generating it (32 random bytes, mode 0600) on first start. The key is
// the file's base64 text itself, not the bytes it encodes, so that an
// operator can paste the file's contents into coturn's static-auth-secret
// and both servers accept the same credentials.
func turnSecret(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.TURNSecret != "" {
		return []byte(cfg.TURNSecret), nil
	}
	raw, generated, err := keyring.Secret(cfg.DataDir, turnSecretFile, 32)
	if err != nil {
		return nil, err
	}
	if generated {
		log.Info("generated a TURN secret", "file", turnSecretFile)
	}
	return []byte(base64.StdEncoding.EncodeToString(raw)), nil
}

// certHosts names a generated TURN certificate: the server name's host
// and the addresses clients are given.
func certHosts(cfg config.Config) []string {
	host := cfg.ServerName
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	hosts := []string{host}
	if cfg.TURNExternalIP.IsValid() {
		hosts = append(hosts, cfg.TURNExternalIP.String())
	}
	if h, _, err := net.SplitHostPort(cfg.TURNTLSListen); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}
