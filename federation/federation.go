package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/fedapi"
	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/federation/internal/keys"
	"github.com/plexus-chat/plexus/federation/internal/queue"
	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// Config configures federation.
type Config struct {
	// ServerName is this server's name.
	ServerName string
	// KeyID and Key are this server's signing key.
	KeyID string
	Key   ed25519.PrivateKey
	// Resolve sends traffic for a server name straight to host:port,
	// without discovery.
	Resolve map[string]string
	// RootCAs are the CAs trusted for outbound requests; nil means the
	// system pool.
	RootCAs *x509.CertPool
	// Insecure skips outbound certificate checks (private test
	// federations only).
	Insecure bool
	// TrustedKeyServers are notaries asked for keys a server will not
	// give us directly.
	TrustedKeyServers []string
	// Version is this server's version, for /federation/v1/version.
	Version string
	// RequestTimeout bounds one outbound request; zero means the
	// transport's default.
	RequestTimeout time.Duration
	// Queue tunes the outbound queues; zero fields take their defaults.
	Queue queue.Config
	// PartialStateJoins makes joins ask for a partial state (send_join
	// with omit_members) and fetch the members in the background
	// (partial.go); off, a join waits for the full state.
	PartialStateJoins bool
}

// EDUHandler delivers EDUs received from other servers to local users:
// typing, receipts, to-device messages, device list and signing key
// updates. The client side implements it.
type EDUHandler interface {
	HandleEDU(ctx context.Context, origin string, eduType string, content []byte) error
}

// Deps are federation's collaborators.
type Deps struct {
	DB    *storage.DB
	Rooms *rooms.Service
	// Local answers other servers' queries about our users, aliases
	// and media.
	Local fedlocal.Local
	// EDUs receives the EDUs of inbound transactions.
	EDUs   EDUHandler
	Logger *slog.Logger

	// Invites receives the invites of local users (invite.go).
	Invites InviteHandler
}

// Federation is this server's side of the Server-Server API.
type Federation struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	client *transport.Client
	// openid is the client of OpenIDUserInfo, whose destinations come
	// from unauthenticated clients: it dials public addresses only.
	openid *transport.Client
	keys   *keys.Keys
	auth   fedhttp.Authenticator
	queue  *queue.Queue
	api    *fedapi.API // made by Register
	// sends notes each destination's last delivery and failure (status.go).
	sends *sendLog

	servers *roomServers
	gaps    roomLocks // one gap walk per room at a time
	out     outbound

	// txns serialises work on one received transaction ID, so a retry
	// that arrives while the first attempt is still being processed
	// waits for its answer instead of processing the PDUs twice.
	txnMu sync.Mutex
	txns  map[string]*txnWait

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

// New makes federation. Start it before serving requests.
func New(cfg Config, deps Deps) (*Federation, error) {
	if cfg.ServerName == "" || cfg.KeyID == "" || cfg.Key == nil {
		return nil, errors.New("federation: server name and signing key are required")
	}
	if deps.DB == nil {
		return nil, errors.New("federation: storage is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Federation{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Logger,
		servers: newRoomServers(cfg.ServerName, deps.DB),
		txns:    make(map[string]*txnWait),
		out:     outbound{wake: make(chan struct{}, 1)},
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	var err error
	tcfg := transport.Config{
		ServerName: cfg.ServerName,
		KeyID:      cfg.KeyID,
		Key:        cfg.Key,
		Resolve:    cfg.Resolve,
		RootCAs:    cfg.RootCAs,
		Insecure:   cfg.Insecure,
		Timeout:    cfg.RequestTimeout,
		Logger:     deps.Logger.With("part", "client"),
	}
	if f.client, err = transport.NewClient(tcfg); err != nil {
		return nil, err
	}
	if f.openid, err = newOpenIDClient(tcfg); err != nil {
		return nil, err
	}
	f.keys, err = keys.New(keys.Config{
		ServerName:     cfg.ServerName,
		KeyID:          cfg.KeyID,
		Key:            cfg.Key,
		TrustedServers: cfg.TrustedKeyServers,
	}, deps.DB, f.client, deps.Logger.With("part", "keys"))
	if err != nil {
		return nil, err
	}
	f.auth = contactAuth{transport.NewVerifier(cfg.ServerName, f.keys), f}
	qcfg := cfg.Queue
	qcfg.ServerName = cfg.ServerName
	f.sends = newSendLog(sender{f.client}, qcfg.Now)
	f.queue, err = queue.New(qcfg, deps.DB, f.sends, deps.Logger.With("part", "queue"))
	if err != nil {
		return nil, err
	}
	return f, nil
}

// KeyFinder is the room service's source of remote servers' verify keys:
// it fetches and caches them, and may block while it does.
func (f *Federation) KeyFinder() rooms.KeyFinder { return f.keys.Finder() }

// SetRooms supplies the room service. The room service needs federation
// (for keys, and as a listener), so it is made after New and handed over
// here, before Start.
func (f *Federation) SetRooms(r *rooms.Service) { f.deps.Rooms = r }

// SetLocal supplies the client side's answers (profiles, keys) and its
// EDU delivery, made after federation like the room service.
func (f *Federation) SetLocal(l fedlocal.Local, edus EDUHandler) {
	f.deps.Local, f.deps.EDUs = l, edus
}

// RegisterKeys adds only the key endpoints to r: the client listener
// publishes them too, as Synapse does.
func (f *Federation) RegisterKeys(r server.Router) { f.keys.Register(r) }

// Register adds every federation endpoint to r (the federation listener's
// router). The room service and the client side must be set by then.
func (f *Federation) Register(r server.Router) error {
	if f.deps.Rooms == nil || f.deps.Local == nil {
		return errors.New("federation: Register before SetRooms and SetLocal")
	}
	api, err := fedapi.New(fedapi.Config{ServerName: f.cfg.ServerName, Version: f.cfg.Version}, fedapi.Deps{
		Store: f.deps.DB, Graph: f.deps.Rooms, Local: f.deps.Local, Logger: f.log.With("part", "api"),
	})
	if err != nil {
		return err
	}
	f.api = api
	f.keys.Register(r)
	api.Register(r, f.auth)
	f.registerInbound(r)
	f.registerJoins(r)
	f.registerInvites(r)
	return nil
}

// Start resumes the outbound queues.
func (f *Federation) Start(ctx context.Context) error {
	if f.deps.Rooms == nil {
		return errors.New("federation: no room service")
	}
	if err := f.queue.Start(ctx); err != nil {
		return err
	}
	f.wg.Add(1)
	go f.runOutbound()
	// Partial-state joins (partial.go): complete what the last run left.
	return f.resumePartialStates(ctx)
}

// Close stops the outbound queues and background work. It is idempotent.
func (f *Federation) Close() error {
	var err error
	f.closed.Do(func() {
		f.cancel()
		err = errors.Join(f.queue.Close(), f.keys.Close(), f.client.Close(), f.openid.Close())
		f.wg.Wait()
	})
	return err
}

// contactAuth verifies requests, and takes any request a server signed as
// a sign that it is up: whatever was queued for it, held back by the
// backoff of an outage, goes now rather than at the next retry.
type contactAuth struct {
	v *transport.Verifier
	f *Federation
}

func (a contactAuth) Authenticate(r *http.Request, body []byte) (string, error) {
	origin, err := a.v.Authenticate(r, body)
	if err == nil && a.f.queue != nil {
		a.f.queue.Reset(origin)
	}
	return origin, err
}
