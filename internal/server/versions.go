package server

import (
	"encoding/json"
	"net/http"
)

// specVersions are the Client-Server API versions GET
// /_matrix/client/versions advertises (spec: Client-Server API, "Get the
// versions of the specification supported by the server").
//
// Clients gate features on this list: matrix-js-sdk and mautrix-go refuse a
// server that lists no v1.x, and enable e.g. authenticated media only from
// v1.11. v1.12 is the version the roadmap targets; add later versions here
// as the features they require land, not before, or clients will use
// endpoints we do not have.
var specVersions = []string{
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6",
	"v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12",
}

// unstableFeatures are the MSCs served ahead of a spec version that
// lists them (spec: "unstable_features", MSC1497); Element Call and
// matrix-js-sdk check these before using them.
var unstableFeatures = map[string]bool{
	// state_after in /sync, stable and unstable parameter names.
	"org.matrix.msc4222": true,
	// The room summary, stable and im.nheko.summary paths.
	"org.matrix.msc3266": true,
	// Delayed events: MatrixRTC's "leave" sent by the server when a
	// client vanishes from a call.
	"org.matrix.msc4140": true,
	// MatrixRTC transports (foci): where the SFU is.
	"org.matrix.msc4143": true,
}

// versionsBody is computed once: the answer never changes while running.
var versionsBody = func() []byte {
	b, err := json.Marshal(struct {
		Versions         []string        `json:"versions"`
		UnstableFeatures map[string]bool `json:"unstable_features"`
	}{specVersions, unstableFeatures})
	if err != nil {
		panic(err) // static data; cannot fail
	}
	return b
}()

// RegisterVersions adds GET /_matrix/client/versions to r. The endpoint
// needs no authentication and answers the same to everyone.
func RegisterVersions(r Router) {
	r.Handle("GET /_matrix/client/versions", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteRawJSON(w, http.StatusOK, versionsBody)
	}))
}
