// Command plexus is the Plexus homeserver.
//
//	plexus serve [flags]   run the server (plexus serve -h lists the flags)
//	plexus version         print the version and the Go version
//
// This package only parses the command line, loads the configuration, builds
// the logger, wires the components together by hand and shuts them down on
// SIGINT or SIGTERM. No protocol logic lives here.
//
// Exit codes: 0 success, 1 failure while running, 2 bad command line or
// configuration.
package main
