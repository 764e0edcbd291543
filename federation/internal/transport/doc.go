// Package transport is how Plexus talks to other homeservers and checks who
// is talking to it (Server-Server API, "Server discovery" and
// "Authentication").
//
// Outbound, a Client resolves a server name to the address to dial, the
// Host header to send and the name its TLS certificate must carry
// ("Resolving server names": IP literals, explicit ports,
// /.well-known/matrix/server with caching, SRV _matrix-fed._tcp and the
// deprecated _matrix._tcp, port 8448), signs each request with the
// server's key (Authorization: X-Matrix, "Request Authentication") and
// decodes the answer; DoRaw hands back an answer that is not JSON (media)
// unread, and GetURL fetches the unsigned Location a media answer may
// point to. A Resolve override sends a server name straight to
// a host:port, for private federations whose server names are not DNS
// names; the certificate is then checked against the server name.
//
// Connections are pooled per Client. The pool is keyed by the resolved
// addresses together with the certificate name, never by address alone,
// so a connection verified for one server is never reused for another
// server that happens to share its address.
//
// Inbound, a Verifier checks the X-Matrix header of a request against its
// body with the origin's key, which it asks a KeySource for (the keys
// package fetches and caches them).
package transport
