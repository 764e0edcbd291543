// Package tlscert provides the server's TLS certificate: the operator's
// certificate and key files when configured, otherwise a self-signed ECDSA
// P-256 certificate that it generates into the data folder on first use
// (tls.crt and tls.key, mode 0600) and reuses on every start after, renewing
// it when it comes within 30 days of expiry.
//
// The TURN relay's TLS listener uses it today and the federation listener
// will reuse it. A self-signed certificate only gets a listener going:
// browsers check the certificate of a turns: server, so operators who want
// TURN over TLS to work for them configure a real one.
package tlscert
