package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ResolveEntry is one --federation-resolve: traffic for Name goes to
// Addr (host:port).
type ResolveEntry struct{ Name, Addr string }

func (e ResolveEntry) String() string { return e.Name + "=" + e.Addr }

// ResolveMap is FederationResolve as a map.
func (c Config) ResolveMap() map[string]string {
	m := make(map[string]string, len(c.FederationResolve))
	for _, e := range c.FederationResolve {
		m[e.Name] = e.Addr
	}
	return m
}

func parseFederationListen(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	return parseListen(s)
}

func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", s)
	}
	return b, nil
}

func parseResolve(s string) (ResolveEntry, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok || name == "" || addr == "" {
		return ResolveEntry{}, fmt.Errorf("%q is not NAME=HOST:PORT", s)
	}
	if _, err := parseServerName(name); err != nil {
		return ResolveEntry{}, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return ResolveEntry{}, fmt.Errorf("%q: the address must be host:port", s)
	}
	return ResolveEntry{Name: name, Addr: addr}, nil
}

// checkFederation reports conflicts between the federation settings.
func checkFederation(c *Config) error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key go together: set both, or neither for a generated certificate")
	}
	if c.FederationListen != "" && c.FederationListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		return fmt.Errorf("federation_listen %q is the same as listen: federation needs a port of its own", c.FederationListen)
	}
	return nil
}
