package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/plexus-chat/plexus/federation"
	"github.com/plexus-chat/plexus/internal/config"
	"github.com/plexus-chat/plexus/internal/keyring"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/tlscert"
	"github.com/plexus-chat/plexus/rooms"
)

// newFederation makes federation and its HTTPS listener, or nils when
// --federation-listen is empty. Neither is started: federation needs the
// room service and the client side first.
func newFederation(cfg config.Config, log *slog.Logger, keys *keyring.Keyring, db *storage.DB) (*federation.Federation, *server.Server, error) {
	if cfg.FederationListen == "" {
		log.Info("federation is off (--federation-listen is empty)")
		return nil, nil, nil
	}
	host := cfg.ServerName
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	cert, err := tlscert.Load(tlscert.Config{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, DataDir: cfg.DataDir, Hosts: []string{host}})
	if err != nil {
		return nil, nil, err
	}
	if cert.SelfSigned {
		log.Warn("the federation listener uses a self-signed certificate: other servers will refuse it unless they trust it (--federation-ca) or skip checks", "path", cert.CertPath)
	}
	var roots *x509.CertPool
	if cfg.FederationCA != "" {
		pem, err := os.ReadFile(cfg.FederationCA)
		if err != nil {
			return nil, nil, fmt.Errorf("reading --federation-ca: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--federation-ca %s holds no PEM certificate", cfg.FederationCA)
		}
	}
	fed, err := federation.New(federation.Config{
		ServerName:        cfg.ServerName,
		KeyID:             keys.KeyID(),
		Key:               keys.PrivateKey(),
		Resolve:           cfg.ResolveMap(),
		RootCAs:           roots,
		Insecure:          cfg.FederationInsecure,
		TrustedKeyServers: cfg.TrustedKeyServers,
		Version:           version,
		PartialStateJoins: cfg.FederationPartialJoins,
	}, federation.Deps{DB: db, Logger: log.With("component", "federation")})
	if err != nil {
		return nil, nil, err
	}
	srv, err := server.New(server.Config{
		Listen: cfg.FederationListen,
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert.Certificate}, MinVersion: tls.VersionTLS12},
		// The request metrics are the client listener's; a second set
		// under the same names would collide in the registry.
	}, server.Deps{Logger: log.With("component", "federation-http")})
	if err != nil {
		return nil, nil, err
	}
	return fed, srv, nil
}

// listeners fans the room service's stored-event notices out to /sync and
// to federation, in that order.
type listeners []rooms.Listener

func (ls listeners) EventsStored(roomID rooms.RoomID, events []*rooms.Stored) {
	for _, l := range ls {
		l.EventsStored(roomID, events)
	}
}

// CurrentStateChanged passes on rooms.CurrentStateListener's notice to
// the listeners that hear it.
func (ls listeners) CurrentStateChanged(roomID rooms.RoomID, changes []rooms.StateChange) {
	for _, l := range ls {
		if cl, ok := l.(rooms.CurrentStateListener); ok {
			cl.CurrentStateChanged(roomID, changes)
		}
	}
}

// StateCompleted passes on rooms.StateListener's notice to the listeners
// that hear it.
func (ls listeners) StateCompleted(roomID rooms.RoomID) {
	for _, l := range ls {
		if sl, ok := l.(rooms.StateListener); ok {
			sl.StateCompleted(roomID)
		}
	}
}
