package web

import "embed"

// dist is the bundle written by `go run ./web/build`. all: keeps the
// placeholder, so that the pattern matches on a fresh clone.
//
//go:embed all:dist
var dist embed.FS
