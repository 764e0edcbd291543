package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

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
var options = []option{
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
	define("metrics-listen", "ADDR", "",
		"/metrics: empty serves it on --listen, host:port serves it only there, 'off' disables it",
		func(c *Config) *string { return &c.MetricsListen }, parseMetricsListen),
	define("log-level", "LEVEL", "info",
		"debug, info, warn or error",
		func(c *Config) *slog.Level { return &c.LogLevel }, parseLogLevel),
	define("log-format", "FORMAT", LogFormatText,
		"text or json",
		func(c *Config) *string { return &c.LogFormat }, parseLogFormat),
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
