package config

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeFile writes a config file into a temp dir and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plexus.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func defaults() Config {
	return Config{
		ServerName: "localhost:8008",
		Listen:     "127.0.0.1:8008",
		DataDir:    "./plexus-data",
		LogLevel:   slog.LevelInfo,
		// MaxUploadBytes is Synapse's default max_upload_size, 50 MiB.
		MaxUploadBytes: 50 << 20,
		RateLimits:     true,
		LogFormat:      LogFormatText,
		// TURN relay
		TURNListen:       "127.0.0.1:3478",
		FederationListen: "127.0.0.1:8448",
		// Partial-state joins are on unless turned off.
		FederationPartialJoins: true,
		TURNRelayPorts:         PortRange{49152, 65535},
		TURNUserQuota:          20,
		TURNTotalQuota:         1000,
		TURNMaxBitrate:         10000,
		TURNMaxLifetime:        12 * time.Hour,

		MaxEventDelay: 24 * time.Hour,

		// SFU
		SFU:        true,
		SFUUDPPort: 7882,
		SFUTCPPort: 7881,
		SFUAPIKey:  "plexus",
	}
}

func TestParse(t *testing.T) {
	const fullFile = `
server_name: example.org
listen: 0.0.0.0:9000
data: /var/lib/plexus
db: postgres://plexus@db/plexus
metrics_listen: 127.0.0.1:9100
log_level: debug
log_format: json
`
	tests := []struct {
		name string
		file *string // written to a temp file and passed as --config when set
		args []string
		want func(c *Config)
	}{
		{
			name: "defaults",
			want: func(c *Config) {},
		},
		{
			name: "file sets everything",
			file: ptr(fullFile),
			want: func(c *Config) {
				c.ServerName = "example.org"
				c.Listen = "0.0.0.0:9000"
				c.DataDir = "/var/lib/plexus"
				c.DB = "postgres://plexus@db/plexus"
				c.MetricsListen = "127.0.0.1:9100"
				c.LogLevel = slog.LevelDebug
				c.LogFormat = LogFormatJSON
			},
		},
		{
			name: "flags override the file, unset flags keep the file's value",
			file: ptr(fullFile),
			args: []string{"--listen", "[::1]:7000", "-log-level=warn", "--db="},
			want: func(c *Config) {
				c.ServerName = "example.org"
				c.Listen = "[::1]:7000"
				c.DataDir = "/var/lib/plexus"
				c.DB = ""
				c.MetricsListen = "127.0.0.1:9100"
				c.LogLevel = slog.LevelWarn
				c.LogFormat = LogFormatJSON
			},
		},
		{
			name: "a flag equal to the default still overrides the file",
			file: ptr("listen: 0.0.0.0:9000\n"),
			args: []string{"--listen", "127.0.0.1:8008"},
			want: func(c *Config) {},
		},
		{
			name: "flags without a file",
			args: []string{"--server-name", "[1234:5678::abcd]:5678", "--data", "d", "--metrics-listen", "off"},
			want: func(c *Config) {
				c.ServerName = "[1234:5678::abcd]:5678"
				c.DataDir = "d"
				c.MetricsListen = MetricsOff
			},
		},
		{
			name: "last repeated flag wins",
			args: []string{"--log-format", "json", "--log-format", "text"},
			want: func(c *Config) {},
		},
		{
			name: "empty file",
			file: ptr(""),
			want: func(c *Config) {},
		},
		{
			name: "comments only",
			file: ptr("# nothing here\n"),
			want: func(c *Config) {},
		},
		{
			name: "null value means empty",
			file: ptr("db:\nmetrics_listen: ~\n"),
			want: func(c *Config) {},
		},
		{
			name: "yaml 1.1 boolean-looking off stays text",
			file: ptr("metrics_listen: off\n"),
			want: func(c *Config) { c.MetricsListen = MetricsOff },
		},
		{
			name: "anchors and aliases",
			file: ptr("server_name: &n example.org\ndata: *n\n"),
			want: func(c *Config) { c.ServerName, c.DataDir = "example.org", "example.org" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			want := defaults()
			if tt.file != nil {
				p := writeFile(t, *tt.file)
				args = append([]string{"--config", p}, args...)
				want.File = p
			}
			tt.want(&want)
			got, err := Parse(args, nil)
			if err != nil {
				t.Fatalf("Parse(%q): %v", args, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", args, got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		file *string // nil: no --config
		args []string
		want []string // the problems, in order; each is a substring of its line
	}{
		{
			name: "every problem at once, file then flags",
			file: ptr("server_name: bad_name\nlog_level: loud\nbogus: 1\nlisten: 1.2.3.4\n"),
			args: []string{"--log-format", "xml", "--metrics-listen", "nope"},
			want: []string{
				`:1: server_name "bad_name": hostname has invalid character '_'`,
				`:2: log_level "loud": want debug, info, warn or error`,
				`:3: unknown key "bogus"`,
				`:4: listen "1.2.3.4": want host:port`,
				`--metrics-listen "nope": want host:port`,
				`--log-format "xml": want text or json`,
			},
		},
		{
			name: "bad file value reported even when a flag overrides it",
			file: ptr("listen: nowhere\n"),
			args: []string{"--listen", "127.0.0.1:1"},
			want: []string{`:1: listen "nowhere": want host:port`},
		},
		{
			name: "unknown keys with suggestions",
			file: ptr("server-name: a\nServer_Name: b\nturn: true\n"),
			want: []string{
				`:1: unknown key "server-name" (did you mean "server_name"?)`,
				`:2: unknown key "Server_Name" (did you mean "server_name"?)`,
				`:3: unknown key "turn"`,
			},
		},
		{
			name: "duplicate key",
			file: ptr("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n"),
			want: []string{`:2: listen is set twice (first on line 1)`},
		},
		{
			name: "list value",
			file: ptr("listen:\n  - 127.0.0.1:1\n"),
			want: []string{`:1: listen: want a single value, not a list or mapping`},
		},
		{
			name: "top level not a mapping",
			file: ptr("- a\n- b\n"),
			want: []string{`:1: the top level must be a mapping`},
		},
		{
			name: "yaml syntax error",
			file: ptr("listen: [\n"),
			want: []string{`yaml:`},
		},
		{
			name: "missing file",
			args: []string{"--config", "/nonexistent/plexus.yaml"},
			want: []string{`config file: open /nonexistent/plexus.yaml`},
		},
		{
			name: "unknown flag stops parsing",
			args: []string{"--bogus", "--listen", "x"},
			want: []string{`flag provided but not defined: -bogus (see plexus serve -h)`},
		},
		{
			name: "positional arguments",
			args: []string{"--listen", "127.0.0.1:1", "extra", "more"},
			want: []string{`unexpected argument "extra"`, `unexpected argument "more"`},
		},
		{
			name: "database password never echoed",
			args: []string{"--db", "mysql://u:hunter2@h/db"},
			want: []string{`--db mysql://u:xxxxx@h/db: want empty (SQLite in the data folder) or a postgres:// URL`},
		},
		{
			name: "unparseable secret hidden entirely",
			args: []string{"--db", "hunter2"},
			want: []string{`--db (value hidden): want empty`},
		},
		{
			name: "metrics on the main address",
			args: []string{"--metrics-listen", "127.0.0.1:8008"},
			want: []string{`metrics_listen "127.0.0.1:8008" is the same as listen`},
		},
		{
			name: "empty values",
			args: []string{"--server-name=", "--listen=", "--data=", "--log-level="},
			want: []string{
				`--server-name "": must not be empty`,
				`--listen "": want host:port`,
				`--data "": must not be empty`,
				`--log-level "": want debug`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != nil {
				args = append([]string{"--config", writeFile(t, *tt.file)}, args...)
			}
			_, err := Parse(args, nil)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse(%q) error = %v, want *Error", args, err)
			}
			if len(ce.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(ce.Problems), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(ce.Problems[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, ce.Problems[i], w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks a secret: %s", err)
			}
			if got := strings.Count(err.Error(), "\n"); got != len(tt.want) {
				t.Errorf("Error() has %d lines after the heading, want one per problem:\n%s", got, err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestParseHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := Parse([]string{"-h"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) error = %v, want flag.ErrHelp", err)
	}
	if _, err := Parse([]string{"--help"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(--help) with no writer: %v", err)
	}
	for _, o := range options {
		for _, w := range []string{"--" + o.name, "[" + o.key + "]"} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("help lacks %q:\n%s", w, out.String())
			}
		}
	}
}

// TestDefaultsValid guards the table: every default must pass its own parser
// and YAML keys must be unique.
func TestDefaultsValid(t *testing.T) {
	keys := map[string]bool{}
	for _, o := range options {
		var c Config
		if err := o.set(&c, o.def); err != nil {
			t.Errorf("default of --%s = %q: %v", o.name, o.def, err)
		}
		if keys[o.key] {
			t.Errorf("duplicate key %s", o.key)
		}
		keys[o.key] = true
		if o.usage == "" || o.arg == "" {
			t.Errorf("--%s lacks usage or placeholder", o.name)
		}
	}
}

// TestOtherKinds shows that a row of another type (bool, duration) works
// with the same machinery, as later TURN and SFU flags will need.
func TestOtherKinds(t *testing.T) {
	var enabled bool
	var ttl time.Duration
	opts := []option{
		define("turn", "BOOL", "false", "enable TURN",
			func(*Config) *bool { return &enabled }, parseBoolForTest),
		define("turn-ttl", "DURATION", "24h", "credential lifetime",
			func(*Config) *time.Duration { return &ttl }, time.ParseDuration),
	}
	tests := []struct {
		name        string
		file        string
		args        []string
		wantEnabled bool
		wantTTL     time.Duration
		wantErr     string
	}{
		{name: "defaults", wantTTL: 24 * time.Hour},
		{name: "bare bool flag", args: []string{"--turn"}, wantEnabled: true, wantTTL: 24 * time.Hour},
		{name: "file", file: "turn: true\nturn_ttl: 1h\n", wantEnabled: true, wantTTL: time.Hour},
		{name: "flag overrides file", file: "turn: true\n", args: []string{"--turn=false", "--turn-ttl", "2m"}, wantTTL: 2 * time.Minute},
		{name: "bad duration", args: []string{"--turn-ttl", "soon"}, wantErr: `--turn-ttl "soon": time: invalid duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enabled, ttl = false, 0
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			_, err := parse(opts, nil, args, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if enabled != tt.wantEnabled || ttl != tt.wantTTL {
				t.Errorf("got turn=%v ttl=%v, want %v %v", enabled, ttl, tt.wantEnabled, tt.wantTTL)
			}
		})
	}
}

func parseBoolForTest(s string) (bool, error) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New("want true or false")
}

func TestLogValueRedacts(t *testing.T) {
	c := defaults()
	c.DB = "postgres://plexus:hunter2@db/plexus"
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c)
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), "xxxxx") {
		t.Errorf("log line does not redact the password: %s", buf.String())
	}
}
