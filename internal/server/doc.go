// Package server is Plexus's HTTP edge: it owns the listeners, the one
// http.ServeMux every API package registers its routes on, and everything
// that must happen to every request whatever its route.
//
// For every request, in order:
//
//   - CORS headers, as the Client-Server API asks of all responses ("Web
//     Browser Clients"), and an immediate 204 for OPTIONS pre-flights, since
//     the server "MUST NOT perform any logic defined for the endpoints" on
//     OPTIONS;
//   - routing through the ServeMux; an unknown path under /_matrix/ gets 404
//     M_UNRECOGNIZED and a known path with the wrong method 405
//     M_UNRECOGNIZED (Client-Server API, "Common error codes");
//   - a panic in a handler becomes 500 M_UNKNOWN instead of a dropped
//     connection;
//   - one log line and the request metrics, labelled by the route pattern,
//     not the path, so that IDs in paths do not explode label cardinality.
//
// Handlers answer with WriteJSON, WriteRawJSON (bytes that were signed must
// go out unchanged) and WriteError, the single place where an
// *mxerr.MatrixError becomes an HTTP response.
//
// Patterns given to Handle must name the method ("GET /_matrix/..."), so that
// the mux can tell a wrong method (405) from an unknown path (404).
//
// The package also serves GET /_matrix/client/versions, which needs nothing
// but configuration. With Config.TLS the main listener serves HTTPS (the
// federation listener is a second Server).
package server
