// Command build bundles the web client: web/src/main.js and everything it
// imports (its own modules, its CSS and the npm packages in
// web/node_modules) into web/dist with esbuild's Go API, names each file
// by its content hash, and writes web/dist/index.html pointing at them.
// It works offline once `npm ci` has filled web/node_modules. The
// Makefile's web target runs it from the repository root:
//
//	go run ./web/build [-dir web] [-dev]
package main
