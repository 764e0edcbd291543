package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestFederationSettings(t *testing.T) {
	c, err := Parse([]string{
		"--federation-listen", "127.0.0.1:0", "--tls-cert", "/c.pem", "--tls-key", "/k.pem",
		"--federation-ca", "/ca.pem", "--federation-insecure=true",
		"--federation-resolve", "hs1=127.0.0.1:8448", "--federation-resolve", "hs2=[::1]:9000",
		"--trusted-key-server", "matrix.org",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.FederationListen, want.TLSCert, want.TLSKey = "127.0.0.1:0", "/c.pem", "/k.pem"
	want.FederationCA, want.FederationInsecure = "/ca.pem", true
	want.FederationResolve = []ResolveEntry{{"hs1", "127.0.0.1:8448"}, {"hs2", "[::1]:9000"}}
	want.TrustedKeyServers = []string{"matrix.org"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if m := c.ResolveMap(); m["hs2"] != "[::1]:9000" || len(m) != 2 {
		t.Errorf("ResolveMap = %v", m)
	}

	// The empty address disables federation.
	if c, err := Parse([]string{"--federation-listen="}, nil); err != nil || c.FederationListen != "" {
		t.Errorf("--federation-listen= : %q, %v", c.FederationListen, err)
	}

	// The config file takes the same settings, the list as a sequence.
	dir := t.TempDir()
	file := filepath.Join(dir, "plexus.yaml")
	yaml := "federation_resolve:\n  - hs1=127.0.0.1:1\n  - hs3=localhost:2\nfederation_listen: 127.0.0.1:9448\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Parse([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.FederationResolve) != 2 || c.FederationResolve[1] != (ResolveEntry{"hs3", "localhost:2"}) || c.FederationListen != "127.0.0.1:9448" {
		t.Errorf("from the file: %+v %q", c.FederationResolve, c.FederationListen)
	}
}

func TestFederationSettingsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--federation-resolve", "hs1"},
		{"--federation-resolve", "hs1=nohostport"},
		{"--federation-resolve", "=127.0.0.1:1"},
		{"--tls-cert", "/c.pem"},
		{"--federation-listen", "127.0.0.1:8008"}, // same as --listen
		{"--federation-insecure", "maybe"},
	} {
		_, err := Parse(args, nil)
		if err == nil {
			t.Errorf("%v: accepted", args)
			continue
		}
		if strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%v: empty error", args)
		}
	}
}
