package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestSFUSettings(t *testing.T) {
	c, err := Parse([]string{
		"--sfu-udp-port", "50000", "--sfu-tcp-port", "off", "--sfu-listen-ip", "::ffff:10.0.0.2",
		"--sfu-external-ip", "203.0.113.9", "--sfu-external-ip", "2001:db8::9",
		"--sfu-api-key", "APIabc", "--sfu-api-secret", strings.Repeat("s", 32),
		"--sfu-url", "wss://sfu.example.org/",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.SFUUDPPort, want.SFUTCPPort = 50000, -1
	want.SFUListenIP = "10.0.0.2"
	want.SFUExternalIPs = []netip.Addr{netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8::9")}
	want.SFUAPIKey, want.SFUAPISecret = "APIabc", strings.Repeat("s", 32)
	want.SFUURL = "wss://sfu.example.org"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	c, err = Parse([]string{"--sfu=off", "--sfu-udp-port", "0", "--sfu-tcp-port", "0"}, nil)
	if err != nil || c.SFU || c.SFUUDPPort != 0 || c.SFUTCPPort != 0 {
		t.Errorf("--sfu off, ports 0: %+v, %v", c, err)
	}
}

func TestSFUErrors(t *testing.T) {
	_, err := Parse([]string{
		"--sfu-udp-port", "70000", "--sfu-tcp-port", "x", "--sfu-listen-ip", "localhost",
		"--sfu-external-ip", "0.0.0.0", "--sfu-api-key", "a b", "--sfu-api-secret", "short",
		"--sfu-url", "https://sfu.example.org",
	}, nil)
	if err == nil {
		t.Fatal("bad SFU settings were accepted")
	}
	for _, want := range []string{
		`--sfu-udp-port "70000": want a port`,
		`--sfu-tcp-port "x": want a port`,
		`--sfu-listen-ip "localhost": want an IP address`,
		`--sfu-external-ip "0.0.0.0": want an IP address`,
		`--sfu-api-key "a b": want a non-empty key`,
		`--sfu-api-secret`,
		`--sfu-url "https://sfu.example.org": want a ws:// or wss:// URL`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("the rejected secret appears in the error:\n%v", err)
	}
}
