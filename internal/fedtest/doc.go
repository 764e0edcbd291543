// Package fedtest runs federations of real Plexus servers for tests: each
// server is the plexus binary in its own process, with its own data
// folder, client listener and HTTPS federation listener on loopback, a
// certificate for its server name that the others trust (no certificate
// check is skipped), and --federation-resolve entries that send traffic
// for the names hs1, hs2, ... straight to each other's ports.
//
// Servers can be stopped and started again on the same data and ports,
// which is how tests take a server offline and bring it back. Extra names
// (a foreign test server written with another implementation) can be
// added to the resolve table with Extra.
//
// It lives in the root internal/ so that tests of any package can use it:
// the federation tests, and the web client's browser tests of calls
// across servers (Options.NoRace keeps those servers uninstrumented).
package fedtest
