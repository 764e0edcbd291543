// Package web serves Plexus's built-in web client: a browser Matrix client
// (register, rooms, chat over the realtime WebSocket, 1:1 video calls)
// that uses only Plexus's public APIs, like any other client.
//
// The client's sources are plain JavaScript modules under web/src; the
// `make web` target installs their npm dependencies from the lockfile
// (npm ci into web/node_modules) and bundles them with esbuild's Go API
// (go run ./web/build) into web/dist, which this package embeds (an
// embed directive in embed.go). No CDN, no runtime downloads. A binary built before the
// bundle existed serves a 503 page that says to run `make web`.
//
// Routes: GET / is index.html (Cache-Control: no-cache, with an ETag, so
// a new build is picked up at once); GET /assets/NAME-HASH.ext are the
// bundle's files, whose names carry a content hash and so are cached as
// immutable. Nothing is served under /_matrix: unknown Matrix paths keep
// their M_UNRECOGNIZED answers.
package web
