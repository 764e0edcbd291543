//go:build !linux

package dgram

import "net"

// Loop is Linux's event loop; elsewhere sockets keep Go's networking.
type Loop struct{}

// NewLoop returns nil: the portable path.
func NewLoop() (*Loop, error) { return nil, nil }

// Adopt serves c with h on Go's networking.
func (l *Loop) Adopt(c *net.UDPConn, h Handler, queue int) (Socket, error) {
	return newPortable(c, h), nil
}

// Close does nothing.
func (l *Loop) Close() error { return nil }
