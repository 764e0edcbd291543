package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"text/tabwriter"
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
	// MetricsListen is "" to serve /metrics on the main listener, MetricsOff
	// to serve no metrics at all, or a host:port to serve /metrics only there.
	MetricsListen string
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// LogFormat is LogFormatText or LogFormatJSON.
	LogFormat string
}

// Special values of settings.
const (
	// MetricsOff as MetricsListen disables /metrics.
	MetricsOff = "off"

	LogFormatText = "text"
	LogFormatJSON = "json"
)

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
	given  map[string]string
}

func (f *rawFlag) String() string   { return "" }
func (f *rawFlag) IsBoolFlag() bool { return f.isBool }
func (f *rawFlag) Set(s string) error {
	f.given[f.name] = s
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
	given := map[string]string{}
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
		raw, ok := given[o.name]
		if !ok {
			continue
		}
		if err := o.set(&c, raw); err != nil {
			problems = append(problems, fmt.Sprintf("--%s %s: %v", o.name, o.show(raw), err))
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
