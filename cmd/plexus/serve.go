package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/plexus-chat/plexus/internal/config"
	"github.com/plexus-chat/plexus/internal/gcpolicy"
	"github.com/plexus-chat/plexus/internal/keyring"
	"github.com/plexus-chat/plexus/internal/metrics"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling"
	"github.com/plexus-chat/plexus/web"
	"github.com/prometheus/client_golang/prometheus"
)

func runServe(ctx context.Context, std stdio, args []string) int {
	cfg, err := config.Parse(args, std.stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(std.stderr, "plexus serve: %v\n", err)
		return exitUsage
	}
	log := newLogger(std.stderr, cfg)
	gc := gcpolicy.Apply(os.Getenv)
	log.Debug("garbage collector", "gogc", gc.Percent, "memory_limit", gc.Limit)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("plexus stopped with an error", "err", err)
		return exitFailure
	}
	log.Info("plexus stopped")
	return exitOK
}

// serve wires the components, runs until ctx is cancelled (SIGINT or
// SIGTERM) or a component fails, and closes everything it started.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) (err error) {
	log.Info("starting plexus", "version", version, "config", cfg)

	keys, err := keyring.Load(cfg.DataDir)
	if err != nil {
		return err
	}
	if keys.Generated() {
		// Normal on first start. On a server that had a key it means the
		// data folder was lost: other servers cache the old key and will
		// distrust events signed with the new one until they refetch.
		log.Info("generated a new signing key; keep a backup of it", "key_id", keys.KeyID(), "path", keys.Path())
	} else {
		log.Info("loaded signing key", "key_id", keys.KeyID(), "path", keys.Path())
	}

	var reg *prometheus.Registry
	if cfg.MetricsListen != config.MetricsOff {
		if reg, err = metrics.NewRegistry(); err != nil {
			return err
		}
	}

	srv, err := server.New(server.Config{
		Listen:        cfg.Listen,
		MetricsListen: cfg.MetricsListen,
	}, server.Deps{
		Logger:  log.With("component", "http"),
		Metrics: reg,
	})
	if err != nil {
		return err
	}
	server.RegisterVersions(srv)

	cs := &components{log: log}
	defer func() {
		if cerr := cs.closeAll(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	// Components start in dependency order and close in reverse: storage,
	// then the room service, then srv last, so that no request arrives
	// before everything behind it is up, and the HTTP server stops taking
	// requests before the rooms finish their in-flight writes and the
	// database closes.
	db, err := storage.Open(ctx, cfg.DB, cfg.DataDir)
	if err != nil {
		return err
	}
	cs.adopt("storage", db)
	log.Info("storage open", "backend", db.Backend())
	var roomMetrics prometheus.Registerer
	if reg != nil { // a nil *Registry in the interface would not read as nil
		roomMetrics = reg
	}
	// The feed follows the event stream for /sync; the room service tells
	// it when it has stored events, so it exists first.
	feed, err := signalling.NewFeed(ctx, signalling.FeedConfig{ServerName: cfg.ServerName}, db, log.With("component", "feed"))
	if err != nil {
		return err
	}
	cs.adopt("feed", feed)
	fed, fedSrv, err := newFederation(cfg, log, keys, db)
	if err != nil {
		return err
	}
	roomDeps := rooms.Deps{Store: db, Listener: feed}
	if fed != nil {
		cs.adopt("federation", fed)
		roomDeps.Keys = fed.KeyFinder()
		roomDeps.Listener = listeners{feed, fed}
	}
	roomSvc, err := rooms.New(rooms.Config{
		Signer: rooms.Signer{Server: rooms.ServerName(cfg.ServerName), KeyID: keys.KeyID(), Key: keys.PrivateKey()},
	}, rooms.Deps{
		Store:    roomDeps.Store,
		Keys:     roomDeps.Keys,
		Listener: roomDeps.Listener,
		Logger:   log.With("component", "rooms"),
		Metrics:  roomMetrics,
	})
	if err != nil {
		return err
	}
	cs.adopt("rooms", roomSvc)
	turnCreds, turnSrv, err := startTURN(cfg, log, reg, cs)
	if err != nil {
		return err
	}

	cookieKey, _, err := keyring.Secret(cfg.DataDir, "cookie.key", 32)
	if err != nil {
		return err
	}
	var limits signalling.RateLimits
	if cfg.RateLimits {
		limits = signalling.DefaultRateLimits()
	} else {
		log.Warn("rate limits are off: any client may send and register as fast as it likes")
	}
	var clientFed signalling.Federation
	var openID signalling.OpenIDVerifier
	if fed != nil {
		// A nil *Federation must not become a non-nil interface.
		clientFed, openID = fed, fed
	}
	// The SFU is built after the client side, whose world store it
	// writes to; the operator page reads its status through this.
	sfuStatus := &lateSFU{}
	var rtc signalling.RTCConfig
	if cfg.SFU {
		secret, err := sfuSecret(cfg, log)
		if err != nil {
			return err
		}
		rtc = signalling.RTCConfig{APIKey: cfg.SFUAPIKey, APISecret: secret, SFUURL: cfg.SFUURL}
	} else {
		rtc.Disabled = true
	}
	client, err := signalling.New(signalling.Config{
		ServerName:               cfg.ServerName,
		PublicBaseURL:            cfg.PublicBaseURL,
		Registration:             cfg.EffectiveRegistration(),
		RegistrationSharedSecret: cfg.RegistrationSharedSecret,
		RateLimits:               limits,
		DataDir:                  cfg.DataDir,
		MediaDir:                 cfg.MediaDir,
		MaxUploadBytes:           cfg.MaxUploadBytes,
		TURN:                     turnCreds,
		CookieKey:                cookieKey,
		RTC:                      rtc,
		MaxEventDelay:            cfg.MaxEventDelay,
	}, signalling.Deps{
		DB: db, Rooms: roomSvc, Feed: feed,
		Logger:     log.With("component", "client"),
		Metrics:    roomMetrics,
		Federation: clientFed,
		OpenID:     openID,
		Status:     statusSources(fed, turnSrv, sfuStatus),
	})
	if err != nil {
		return err
	}
	cs.adopt("client", client)
	if err := client.Start(ctx); err != nil {
		return err
	}
	client.Register(srv)
	webClient, err := web.New(web.Config{}, web.Deps{Logger: log.With("component", "web")})
	if err != nil {
		return err
	}
	webClient.Register(srv) // the web client at /, a client of the APIs above like any other
	log.Info("client API ready", "registration", cfg.EffectiveRegistration())
	if cfg.SFU {
		if sfuStatus.srv, err = startSFU(cfg, rtc.APISecret, log, reg, cs, turnCreds, client.CallWorld(), srv); err != nil {
			return err
		}
	}

	if fed != nil {
		fed.SetRooms(roomSvc)
		fed.SetLocal(client.FederationLocal(), client)
		fed.SetInvites(client)
		// Published on the client listener too, as Synapse does, for
		// tools that look for keys there.
		fed.RegisterKeys(srv)
		if err := fed.Register(fedSrv); err != nil {
			return err
		}
		if err := fed.Start(ctx); err != nil {
			return err
		}
		if err := cs.start(ctx, "federation-http", fedSrv); err != nil {
			return err
		}
		log.Info("federation listening", "addr", fedSrv.Addr().String(), "server_name", cfg.ServerName)
	}

	if err := cs.start(ctx, "http", srv); err != nil {
		if ctx.Err() != nil {
			log.Info("interrupted while starting", "cause", context.Cause(ctx))
			return nil // a signal during start-up is a request to stop, not a failure
		}
		return err
	}
	attrs := []any{"addr", srv.Addr().String(), "server_name", cfg.ServerName}
	if ma := srv.MetricsAddr(); ma != nil {
		attrs = append(attrs, "metrics_addr", ma.String())
	}
	log.Info("listening", attrs...)

	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
		return nil
	case err := <-srv.Failed():
		return err
	}
}

// newLogger builds the process's one logger; every component gets it (or a
// child from With) as a dependency.
func newLogger(w io.Writer, cfg config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
