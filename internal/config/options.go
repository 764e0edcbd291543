package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/plexus-chat/plexus/internal/servername"
)

// option is one setting, settable as a flag and as a YAML key.
type option struct {
	name   string // flag name; the YAML key is derived from it
	key    string // YAML key
	arg    string // placeholder in the help text
	def    string // default, as the text a user would type
	usage  string
	isBool bool // flag may be given bare (--x meaning --x=true)
	hidden bool // never echo the value in error messages
	set    func(c *Config, raw string) error
	// repeat marks a list: the flag may be given several times and the
	// YAML value may be a sequence. set then replaces the list with the
	// one item (none for ""), and add appends one.
	repeat bool
	add    func(c *Config, raw string) error
}

// define builds an option from the field it sets and a parse function that
// turns the raw text (from a flag, from YAML or the default) into the typed
// value. parse errors say what is wanted; the caller adds where and what.
func define[T any](name, arg, def, usage string, field func(*Config) *T, parse func(string) (T, error)) option {
	_, isBool := any(*new(T)).(bool)
	return option{
		name:   name,
		key:    strings.ReplaceAll(name, "-", "_"),
		arg:    arg,
		def:    def,
		usage:  usage,
		isBool: isBool,
		set: func(c *Config, raw string) error {
			v, err := parse(raw)
			if err != nil {
				return err
			}
			*field(c) = v
			return nil
		},
	}
}

// secret marks an option whose value must not appear in error messages.
func (o option) secret() option {
	o.hidden = true
	return o
}

// show renders a raw value for an error message.
func (o option) show(raw string) string {
	if o.hidden {
		return redactURL(raw)
	}
	return strconv.Quote(raw)
}

// options is the table of every `serve` setting. Order is the order of the
// help text and of reported problems.
var options = append(generalOptions[:len(generalOptions):len(generalOptions)], sfuOptions...)

var generalOptions = []option{
	define("server-name", "NAME", "localhost:8008",
		"Matrix server name: hostname[:port], the part after ':' in user IDs",
		func(c *Config) *string { return &c.ServerName }, parseServerName),
	define("listen", "ADDR", "127.0.0.1:8008",
		"host:port of the client API and web listener (port 0 picks a free port)",
		func(c *Config) *string { return &c.Listen }, parseListen),
	define("data", "DIR", "./plexus-data",
		"data folder: signing key and SQLite database",
		func(c *Config) *string { return &c.DataDir }, parseDataDir),
	define("db", "URL", "",
		"database: empty for SQLite in the data folder, or postgres://...",
		func(c *Config) *string { return &c.DB }, parseDB).secret(),
	define("registration", "MODE", "",
		"open, token (a registration token is required) or closed; default: open while --listen is loopback-only, closed otherwise",
		func(c *Config) *string { return &c.Registration }, parseRegistration),
	define("registration-shared-secret", "SECRET", "",
		"enables shared-secret admin registration (POST /_synapse/admin/v1/register), as Synapse's registration_shared_secret",
		func(c *Config) *string { return &c.RegistrationSharedSecret }, parseAny).secret(),
	define("public-base-url", "URL", "",
		"public URL of the client API, for /.well-known/matrix/client; empty: the URL each request came in on",
		func(c *Config) *string { return &c.PublicBaseURL }, parseBaseURL),
	define("media-dir", "DIR", "",
		"folder for uploaded media; empty: <data>/media",
		func(c *Config) *string { return &c.MediaDir }, parseAny),
	define("max-upload-size", "BYTES", "52428800",
		"largest media upload accepted, in bytes",
		func(c *Config) *int64 { return &c.MaxUploadBytes }, parsePositiveInt),
	define("rate-limits", "on|off", "on",
		"rate limits on login, registration and sending (429 M_LIMIT_EXCEEDED); off only for load tests and trusted set-ups",
		func(c *Config) *bool { return &c.RateLimits }, parseOnOff),
	define("max-event-delay", "DURATION", "24h",
		"longest delay of a delayed event (MSC4140; a call membership's leave is one); longer asks get M_MAX_DELAY_EXCEEDED",
		func(c *Config) *time.Duration { return &c.MaxEventDelay }, parseMaxDelay),
	define("metrics-listen", "ADDR", "",
		"/metrics: empty serves it on --listen, host:port serves it only there, 'off' disables it",
		func(c *Config) *string { return &c.MetricsListen }, parseMetricsListen),
	define("log-level", "LEVEL", "info",
		"debug, info, warn or error",
		func(c *Config) *slog.Level { return &c.LogLevel }, parseLogLevel),
	define("log-format", "FORMAT", LogFormatText,
		"text or json",
		func(c *Config) *string { return &c.LogFormat }, parseLogFormat),
	define("federation-listen", "ADDR", "127.0.0.1:8448",
		"host:port of the HTTPS federation listener; empty disables federation",
		func(c *Config) *string { return &c.FederationListen }, parseFederationListen),
	define("tls-cert", "FILE", "",
		"PEM certificate chain of the federation listener; empty: a self-signed one generated in the data folder",
		func(c *Config) *string { return &c.TLSCert }, parseAny),
	define("tls-key", "FILE", "",
		"PEM private key of --tls-cert",
		func(c *Config) *string { return &c.TLSKey }, parseAny),
	define("federation-ca", "FILE", "",
		"PEM file of extra CAs to trust for outbound federation requests",
		func(c *Config) *string { return &c.FederationCA }, parseAny),
	define("federation-insecure", "true|false", "false",
		"skip certificate checks on outbound federation requests: private test federations only",
		func(c *Config) *bool { return &c.FederationInsecure }, parseBool),
	defineList("federation-resolve", "NAME=HOST:PORT",
		"send federation traffic for server NAME straight to HOST:PORT, without discovery (repeatable)",
		func(c *Config) *[]ResolveEntry { return &c.FederationResolve }, parseResolve),
	define("federation-partial-joins", "on|off", "on",
		"join remote rooms with a partial state (members fetched in the background) rather than waiting for the full state",
		func(c *Config) *bool { return &c.FederationPartialJoins }, parseOnOff),
	defineList("trusted-key-server", "NAME",
		"a notary server asked for other servers' keys (repeatable; none by default)",
		func(c *Config) *[]string { return &c.TrustedKeyServers }, parseServerName),
	define("turn-listen", "ADDR", "127.0.0.1:3478",
		"TURN relay over UDP and TCP: IP:port, or :port for every interface; empty disables it",
		func(c *Config) *string { return &c.TURNListen }, parseTURNListen),
	define("turn-tls-listen", "ADDR", "",
		"TURN over TLS (e.g. :443 or :5349); empty disables it",
		func(c *Config) *string { return &c.TURNTLSListen }, parseTURNListen),
	define("turn-tls-cert", "FILE", "",
		"PEM certificate chain for --turn-tls-listen; empty: a self-signed one generated in the data folder",
		func(c *Config) *string { return &c.TURNTLSCert }, parseTURNFile),
	define("turn-tls-key", "FILE", "",
		"PEM private key of --turn-tls-cert",
		func(c *Config) *string { return &c.TURNTLSKey }, parseTURNFile),
	define("turn-external-ip", "IP", "",
		"IPv4 address put in relayed candidates and TURN URIs, when behind NAT; empty: the --turn-listen address, or the host's first public one",
		func(c *Config) *netip.Addr { return &c.TURNExternalIP }, parseExternalIP),
	define("turn-relay-ports", "MIN-MAX", "49152-65535",
		"UDP ports for relayed transport addresses",
		func(c *Config) *PortRange { return &c.TURNRelayPorts }, parsePortRange),
	define("turn-secret", "SECRET", "",
		"TURN REST shared secret (coturn's static-auth-secret); empty: generated into <data>/turn.secret",
		func(c *Config) *string { return &c.TURNSecret }, parseTURNFile).secret(),
	defineList("turn-allow-peer", "CIDR",
		"let the relay reach this range although it is local or private (repeatable)",
		func(c *Config) *[]netip.Prefix { return &c.TURNAllowPeers }, parsePeerPrefix),
	defineList("turn-deny-peer", "CIDR",
		"never let the relay reach this range (repeatable; the most specific allow or deny wins)",
		func(c *Config) *[]netip.Prefix { return &c.TURNDenyPeers }, parsePeerPrefix),
	define("turn-user-quota", "N", "20",
		"TURN allocations one user may hold at once; 0: no limit",
		func(c *Config) *int { return &c.TURNUserQuota }, parseCount),
	define("turn-total-quota", "N", "1000",
		"TURN allocations in all at once; 0: no limit",
		func(c *Config) *int { return &c.TURNTotalQuota }, parseCount),
	define("turn-max-bitrate", "KBPS", "10000",
		"per-allocation relay bandwidth cap in kbit/s, both directions together; 0: no cap",
		func(c *Config) *int64 { return &c.TURNMaxBitrate }, parseKbps),
	define("turn-max-lifetime", "DURATION", "12h",
		"longest a TURN allocation may live however often it is refreshed; 0: no limit",
		func(c *Config) *time.Duration { return &c.TURNMaxLifetime }, parseLifetime),
}

// crossChecks run after every field parsed; each reports one conflict
// between fields.
var crossChecks = []func(*Config) error{
	func(c *Config) error {
		if c.MetricsListen != "" && c.MetricsListen == c.Listen {
			return fmt.Errorf("metrics_listen %q is the same as listen: leave it empty to serve /metrics on the main listener", c.MetricsListen)
		}
		return nil
	},
	checkTURN,
	checkFederation,
}

func parseServerName(s string) (string, error) {
	if err := servername.CheckOwn(s); err != nil {
		return "", err
	}
	return s, nil
}

func parseListen(s string) (string, error) {
	if err := checkListen(s); err != nil {
		return "", err
	}
	return s, nil
}

func parseMetricsListen(s string) (string, error) {
	if s == "" || s == MetricsOff {
		return s, nil
	}
	if err := checkListen(s); err != nil {
		return "", fmt.Errorf("%w, or empty, or %q", err, MetricsOff)
	}
	return s, nil
}

func parseDataDir(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", errors.New("must not be empty")
	}
	return s, nil
}

func parseDB(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("want empty (SQLite in the data folder) or a postgres:// URL")
	}
	return s, nil
}

func parseRegistration(s string) (string, error) {
	switch s {
	case "", "open", "token", "closed":
		return s, nil
	}
	return "", errors.New("want open, token or closed")
}

func parseAny(s string) (string, error) { return s, nil }

func parseMaxDelay(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, errors.New("want a duration of at least 1s, such as 24h")
	}
	return d, nil
}

func parseOnOff(s string) (bool, error) {
	switch s {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, errors.New("want on or off")
}

func parseBaseURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("want an http:// or https:// URL")
	}
	return strings.TrimSuffix(s, "/"), nil
}

func parsePositiveInt(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive integer")
	}
	return n, nil
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, errors.New("want debug, info, warn or error")
}

func parseLogFormat(s string) (string, error) {
	switch s {
	case LogFormatText, LogFormatJSON:
		return s, nil
	}
	return "", fmt.Errorf("want %s or %s", LogFormatText, LogFormatJSON)
}
