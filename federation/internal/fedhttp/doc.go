// Package fedhttp is the thin contract every federation endpoint is written
// against: a request arrives authenticated (Server-Server API,
// "Request Authentication"), its body already read, and its origin known.
// The X-Matrix verification itself lives in the transport package; this
// package only fixes the shapes so the endpoint packages and the transport
// can be built and tested apart.
package fedhttp
