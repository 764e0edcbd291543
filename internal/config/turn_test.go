package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestListOptions covers repeatable options, generic over the options
// table: repeated flags, YAML sequences and scalars, and the precedence
// between them.
func TestListOptions(t *testing.T) {
	tests := []struct {
		name        string
		file        string
		args        []string
		allow, deny []netip.Prefix
	}{
		{name: "default is empty"},
		{
			name:  "repeated flags add up",
			args:  []string{"--turn-allow-peer", "10.0.0.0/8", "--turn-allow-peer=127.0.0.1", "--turn-deny-peer", "10.9.0.0/16"},
			allow: prefixes("10.0.0.0/8", "127.0.0.1/32"),
			deny:  prefixes("10.9.0.0/16"),
		},
		{
			name:  "YAML sequence and scalar",
			file:  "turn_allow_peer: [10.0.0.0/8, \"fd00::/8\"]\nturn_deny_peer: 10.1.2.3\n",
			allow: prefixes("10.0.0.0/8", "fd00::/8"),
			deny:  prefixes("10.1.2.3/32"),
		},
		{
			name:  "block sequence, host bits masked",
			file:  "turn_allow_peer:\n  - 192.168.1.7/24\n  - ::1\n",
			allow: prefixes("192.168.1.0/24", "::1/128"),
		},
		{
			name:  "flags replace the file's list",
			file:  "turn_allow_peer: [10.0.0.0/8, 172.16.0.0/12]\nturn_deny_peer: [8.8.8.8]\n",
			args:  []string{"--turn-allow-peer", "127.0.0.0/8"},
			allow: prefixes("127.0.0.0/8"),
			deny:  prefixes("8.8.8.8/32"),
		},
		{
			name: "an empty flag clears the file's list",
			file: "turn_allow_peer: [10.0.0.0/8]\n",
			args: []string{"--turn-allow-peer="},
		},
		{
			name: "an empty YAML list",
			file: "turn_allow_peer: []\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			c, err := Parse(args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.TURNAllowPeers, tt.allow) || !reflect.DeepEqual(c.TURNDenyPeers, tt.deny) {
				t.Errorf("allow %v deny %v, want %v %v", c.TURNAllowPeers, c.TURNDenyPeers, tt.allow, tt.deny)
			}
		})
	}
}

func TestTURNSettings(t *testing.T) {
	c, err := Parse([]string{
		"--turn-listen", ":3478", "--turn-tls-listen", "[::]:443",
		"--turn-tls-cert", "/etc/tls/c.pem", "--turn-tls-key", "/etc/tls/k.pem",
		"--turn-external-ip", "203.0.113.4", "--turn-relay-ports", "50000-50100",
		"--turn-secret", "s3cret", "--turn-user-quota", "0", "--turn-total-quota", "50",
		"--turn-max-bitrate", "2500", "--turn-max-lifetime", "90m",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.TURNListen, want.TURNTLSListen = ":3478", "[::]:443"
	want.TURNTLSCert, want.TURNTLSKey = "/etc/tls/c.pem", "/etc/tls/k.pem"
	want.TURNExternalIP = netip.MustParseAddr("203.0.113.4")
	want.TURNRelayPorts = PortRange{50000, 50100}
	want.TURNSecret = "s3cret"
	want.TURNUserQuota, want.TURNTotalQuota = 0, 50
	want.TURNMaxBitrate, want.TURNMaxLifetime = 2500, 90*time.Minute
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	// Empty listen addresses disable the relay.
	c, err = Parse([]string{"--turn-listen="}, nil)
	if err != nil || c.TURNListen != "" {
		t.Errorf("--turn-listen= : %q, %v", c.TURNListen, err)
	}
}

func TestTURNErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		args []string
		want []string
	}{
		{
			name: "bad values",
			args: []string{
				"--turn-listen", "localhost:3478", "--turn-external-ip", "2001:db8::1",
				"--turn-relay-ports", "60000-50000", "--turn-user-quota", "-1",
				"--turn-max-bitrate", "lots", "--turn-max-lifetime", "30s",
				"--turn-allow-peer", "10.0.0.0/8", "--turn-allow-peer", "ten",
			},
			want: []string{
				`--turn-listen "localhost:3478": the host must be an IP address`,
				`--turn-external-ip "2001:db8::1": want an IPv4 address`,
				`--turn-relay-ports "60000-50000": want MIN-MAX`,
				`--turn-allow-peer "ten": want a CIDR`,
				`--turn-user-quota "-1": want a whole number`,
				`--turn-max-bitrate "lots": want kbit/s`,
				`--turn-max-lifetime "30s": want at least 1m`,
			},
		},
		{
			name: "list item with its line",
			file: "turn_deny_peer:\n  - 10.0.0.0/8\n  - nope\n  - [1, 2]\n",
			want: []string{`:3: turn_deny_peer "nope": want a CIDR`, `:4: turn_deny_peer: want a list of single values`},
		},
		{
			name: "list for a single-valued key",
			file: "turn_listen: [a, b]\n",
			want: []string{`turn_listen: want a single value`},
		},
		{
			name: "certificate without key",
			args: []string{"--turn-tls-cert", "c.pem"},
			want: []string{`turn_tls_cert and turn_tls_key go together`},
		},
		{
			name: "TLS on the same address",
			args: []string{"--turn-tls-listen", "127.0.0.1:3478"},
			want: []string{`turn_tls_listen "127.0.0.1:3478" is the same as turn_listen`},
		},
		{
			name: "secret never echoed",
			file: "turn_secret: [hunter2]\n",
			want: []string{`turn_secret: want a single value`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			_, err := Parse(args, nil)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error = %v, want *Error", err)
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
				t.Errorf("error leaks the secret: %s", err)
			}
		})
	}
}

func TestHelpMarksRepeatable(t *testing.T) {
	var out strings.Builder
	Parse([]string{"-h"}, &out)
	if !strings.Contains(out.String(), "--turn-allow-peer CIDR ...") {
		t.Errorf("help does not mark --turn-allow-peer repeatable:\n%s", out.String())
	}
}
