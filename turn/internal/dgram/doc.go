// Package dgram serves the TURN server's UDP sockets (the listener and
// every relay socket) and runs a per-socket Handler on each datagram they
// receive; what the handler leaves is read with Socket.ReadFrom, by pion.
//
// Why: a relayed datagram costs a TURN server little work and several
// system calls, and at the rates of a call (a datagram every few
// milliseconds per allocation) what dominates is waking up for each one.
// Go's runtime serves a socket per goroutine: each datagram wakes a
// thread from the runtime's poller, readies the reader goroutine (often
// waking a second thread to run it), fails one more read before parking
// it again, and leaves the thread spinning for work; and every socket is
// in the runtime's edge-triggered poller for writes too, so each send
// wakes it as well. On Linux a Loop instead waits in epoll_wait(2) on all
// its sockets from one goroutine, reads each ready socket in batches with
// recvmmsg(2), and runs the handlers there, so that a datagram relayed
// from client to peer and back costs one wake-up and no goroutine switch,
// as in coturn's event loop. Sockets it serves are taken out of the
// runtime's poller.
//
// Elsewhere, and on Linux when no Loop is given (a nil *Loop), each socket
// keeps Go's own networking: the handler runs inline in ReadFrom, in the
// goroutine that reads the socket (the portable path).
package dgram
