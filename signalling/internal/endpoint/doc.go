// Package endpoint is the edge every Client-Server API handler in
// signalling sits behind: it turns an access token into a [Session]
// (Client-Server API, "Client authentication"), decodes request bodies
// with the spec's error codes for each way a body can be wrong, and maps
// errors to the standard error response.
package endpoint
