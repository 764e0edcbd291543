package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// Config is the validated configuration of `plexus serve`.
type Config struct {
	// File is the --config path the settings were read from, or "".
	File string

	// ServerName is this homeserver's Matrix server name, the part after the
	// colon in user and room IDs. It follows the grammar of the spec
	// appendices, "Server Name".
	ServerName string
	// Listen is the host:port of the client API and web listener.
	Listen string
	// DataDir is the folder holding the signing key and the SQLite database.
	DataDir string
	// DB is empty for SQLite inside DataDir, or a postgres:// URL.
	DB string
	// Registration is "open", "token", "closed", or "" for the default:
	// open while Listen is loopback-only, closed otherwise (see
	// EffectiveRegistration).
	Registration string
	// RegistrationSharedSecret enables shared-secret admin registration
	// (POST /_synapse/admin/v1/register) when set.
	RegistrationSharedSecret string
	// PublicBaseURL is the client API's public URL for
	// /.well-known/matrix/client; empty derives it from each request.
	PublicBaseURL string
	// MediaDir holds uploaded media; empty means <DataDir>/media.
	MediaDir string
	// MaxUploadBytes bounds one media upload.
	MaxUploadBytes int64
	// RateLimits enables the rate limits on login, registration and
	// sending.
	RateLimits bool
	// MaxEventDelay is the longest delay of a delayed event (MSC4140).
	MaxEventDelay time.Duration
	// MetricsListen is "" to serve /metrics on the main listener, MetricsOff
	// to serve no metrics at all, or a host:port to serve /metrics only there.
	MetricsListen string
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// LogFormat is LogFormatText or LogFormatJSON.
	LogFormat string

	// Federation
	//
	// FederationListen is the host:port of the HTTPS federation listener;
	// "" disables federation.
	FederationListen string
	// TLSCert and TLSKey are the federation listener's PEM files; both ""
	// uses a self-signed certificate generated in DataDir.
	TLSCert, TLSKey string
	// FederationCA is a PEM file of extra CAs trusted for outbound
	// federation requests.
	FederationCA string
	// FederationInsecure skips outbound certificate checks.
	FederationInsecure bool
	// FederationResolve maps server names to host:port, bypassing
	// discovery.
	FederationResolve []ResolveEntry
	// TrustedKeyServers are the notaries asked for server keys.
	TrustedKeyServers []string
	// FederationPartialJoins makes joins over federation partial-state
	// joins (send_join with omit_members; members fetched afterwards).
	FederationPartialJoins bool

	// TURN relay
	//
	// TURNListen is the host:port of the relay's UDP and TCP listeners and
	// TURNTLSListen that of its TLS listener; "" disables them.
	TURNListen, TURNTLSListen string
	// TURNTLSCert and TURNTLSKey are PEM files; both "" uses a self-signed
	// certificate generated in DataDir.
	TURNTLSCert, TURNTLSKey string
	// TURNExternalIP is advertised in relayed addresses and URIs; zero
	// derives it from the listen address.
	TURNExternalIP netip.Addr
	// TURNRelayPorts bounds relay ports.
	TURNRelayPorts PortRange
	// TURNSecret is the TURN REST shared secret; "" uses the one generated
	// in DataDir.
	TURNSecret string
	// TURNAllowPeers and TURNDenyPeers adjust the relay's peer policy.
	TURNAllowPeers, TURNDenyPeers []netip.Prefix
	// TURNUserQuota and TURNTotalQuota cap allocations; 0 is no cap.
	TURNUserQuota, TURNTotalQuota int
	// TURNMaxBitrate caps each allocation in kbit/s; 0 is no cap.
	TURNMaxBitrate int64
	// TURNMaxLifetime ends allocations this old; 0 never.
	TURNMaxLifetime time.Duration

	// SFU
	//
	// SFU runs the built-in SFU and its token service.
	SFU bool
	// SFUUDPPort is the one UDP port of all SFU media (0: any free port);
	// SFUTCPPort that of ICE over TCP (0: any free port, -1: none).
	SFUUDPPort, SFUTCPPort int
	// SFUListenIP is the IP the SFU's sockets bind; "" is every interface.
	SFUListenIP string
	// SFUExternalIPs are advertised as host candidates behind 1:1 NAT.
	SFUExternalIPs []netip.Addr
	// SFUAPIKey and SFUAPISecret sign and check SFU access tokens;
	// an empty secret uses the one generated in DataDir.
	SFUAPIKey, SFUAPISecret string
	// SFUURL is the SFU's public ws(s):// URL; "" derives it per request.
	SFUURL string
}

// Special values of settings.
const (
	// MetricsOff as MetricsListen disables /metrics.
	MetricsOff = "off"

	LogFormatText = "text"
	LogFormatJSON = "json"
)

// EffectiveRegistration resolves the default registration mode: open
// while the client listener only accepts loopback connections (a
// developer's machine), closed once it is reachable from elsewhere, so a
// server exposed by accident is not open to sign-ups.
func (c Config) EffectiveRegistration() string {
	if c.Registration != "" {
		return c.Registration
	}
	if c.LoopbackOnly() {
		return "open"
	}
	return "closed"
}

// LoopbackOnly reports whether the client listener accepts connections
// from this machine alone: a developer's machine or a test.
func (c Config) LoopbackOnly() bool { return listenIsLoopback(c.Listen) }

// Postgres reports whether DB names a PostgreSQL database rather than the
// default SQLite file in DataDir.
func (c Config) Postgres() bool { return c.DB != "" }

// LogValue lets the effective configuration be logged at start-up without
// leaking the database password.
func (c Config) LogValue() slog.Value {
	db := "sqlite (in data folder)"
	if c.DB != "" {
		db = redactURL(c.DB)
	}
	metrics := c.MetricsListen
	if metrics == "" {
		metrics = "on main listener"
	}
	return slog.GroupValue(
		slog.String("file", c.File),
		slog.String("server_name", c.ServerName),
		slog.String("listen", c.Listen),
		slog.String("data", c.DataDir),
		slog.String("db", db),
		slog.String("registration", c.EffectiveRegistration()),
		slog.Bool("registration_shared_secret", c.RegistrationSharedSecret != ""),
		slog.String("public_base_url", c.PublicBaseURL),
		slog.String("media_dir", c.MediaDir),
		slog.Int64("max_upload_bytes", c.MaxUploadBytes),
		slog.Bool("rate_limits", c.RateLimits),
		slog.String("metrics_listen", metrics),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", c.LogFormat),
	)
}

// Error lists every problem found in a configuration, one per line.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// Parse reads `plexus serve`'s arguments (without the command words) and the
// --config file they name, and returns the validated configuration. On -h or
// --help it writes the help text to usage and returns flag.ErrHelp. Any other
// failure is an *Error listing every problem found.
func Parse(args []string, usage io.Writer) (Config, error) {
	return parse(options, crossChecks, args, usage)
}

// rawFlag records the text a flag was given; values are parsed later, after
// the file, so that a bad flag value is reported alongside the file's
// problems instead of aborting the flag parser.
type rawFlag struct {
	name   string
	isBool bool
	given  map[string][]string // every value, in order: lists keep them all
}

func (f *rawFlag) String() string   { return "" }
func (f *rawFlag) IsBoolFlag() bool { return f.isBool }
func (f *rawFlag) Set(s string) error {
	f.given[f.name] = append(f.given[f.name], s)
	return nil
}

func parse(opts []option, checks []func(*Config) error, args []string, usage io.Writer) (Config, error) {
	var c Config
	for _, o := range opts {
		// Defaults are constants of this package; a bad one is a bug that
		// the tests catch, reported rather than panicking.
		if err := o.set(&c, o.def); err != nil {
			return Config{}, fmt.Errorf("config: default of --%s: %w", o.name, err)
		}
	}

	fs := flag.NewFlagSet("plexus serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // we print errors and help ourselves
	var file string
	fs.StringVar(&file, "config", "", "")
	given := map[string][]string{}
	for _, o := range opts {
		fs.Var(&rawFlag{name: o.name, isBool: o.isBool, given: given}, o.name, o.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if usage == nil {
				usage = io.Discard
			}
			writeUsage(usage, opts)
			return Config{}, flag.ErrHelp
		}
		return Config{}, &Error{Problems: []string{err.Error() + " (see plexus serve -h)"}}
	}

	var problems []string
	for _, a := range fs.Args() {
		problems = append(problems, fmt.Sprintf("unexpected argument %q: serve takes only flags", a))
	}
	if file != "" {
		c.File = file
		problems = append(problems, applyFile(&c, opts, file)...)
	}
	for _, o := range opts {
		raws, ok := given[o.name]
		if !ok {
			continue
		}
		if !o.repeat {
			raws = raws[len(raws)-1:] // the last one wins
		}
		for i, raw := range raws {
			// A list given on the command line replaces the file's.
			set := o.set
			if i > 0 {
				set = o.add
			}
			if err := set(&c, raw); err != nil {
				problems = append(problems, fmt.Sprintf("--%s %s: %v", o.name, o.show(raw), err))
			}
		}
	}
	// Cross-field checks only make sense once every field is valid; running
	// them on half-applied values would report conflicts that are really
	// consequences of a problem already listed.
	if len(problems) == 0 {
		for _, check := range checks {
			if err := check(&c); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	if len(problems) > 0 {
		return Config{}, &Error{Problems: problems}
	}
	return c, nil
}

func writeUsage(w io.Writer, opts []option) {
	fmt.Fprint(w, `Usage: plexus serve [flags]

Runs the homeserver. Every flag can also be set in the YAML file named by
--config, under the key shown in brackets; a flag given on the command line
overrides the file.

`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  --config FILE\t\tYAML configuration file\n")
	for _, o := range opts {
		arg := " " + o.arg
		if o.isBool {
			arg = ""
		}
		def := ""
		if o.def != "" {
			def = fmt.Sprintf(" (default %q)", o.def)
		}
		if o.repeat {
			arg += " ..."
		}
		fmt.Fprintf(tw, "  --%s%s\t[%s]\t%s%s\n", o.name, arg, o.key, o.usage, def)
	}
	tw.Flush()
}

// redactURL hides the password of a URL, and the whole value when it does not
// parse, since it may then be a bare secret typed in the wrong place.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(value hidden)"
	}
	return u.Redacted()
}
