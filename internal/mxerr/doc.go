// Package mxerr holds MatrixError, the one error type that every Plexus
// package returns when a request must fail with a Matrix error code.
//
// The Client-Server API ("Standard error response") and the Server-Server
// API answer every failure with a JSON body {"errcode": "M_...", "error":
// "..."} and an HTTP status. Packages build a *MatrixError deep inside their
// logic and return it up the stack, wrapped with %w if they like; the HTTP
// edge (internal/server.WriteError) is the single place that turns it into a
// response, so no handler writes error bodies by hand.
package mxerr
