// Package metrics builds the Prometheus registry that every component
// registers its collectors on, and serves it.
//
// The registry is created once in cmd/plexus and passed down as a
// dependency, never the client library's global default registry: several
// servers in one test process (federation tests) each need their own, and a
// global registry would make the second one fail to register.
package metrics
