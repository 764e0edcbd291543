// Package endpointtest holds what the signalling packages' HTTP tests
// share: a fixed-token authenticator and a request helper.
package endpointtest
