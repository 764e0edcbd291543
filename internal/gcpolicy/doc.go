// Package gcpolicy sets how often the garbage collector runs in the
// server process.
//
// A media server's heap is small and its garbage plentiful: pion
// allocates a new buffer at each step of every SCTP packet it sends
// (chunk, packet, DTLS record, ciphertext), several kilobytes per packet.
// In the SFU's world state benchmark (50 peers, 30 updates a second
// each) that was 200 MB/s against a live heap of 35 MB, so at Go's
// default GOGC=100 the collector ran six times a second; each run took a
// quarter of the CPU for 20-30 ms and made the goroutines that allocate
// help it, and its worker was a fifth of the CPU time spent while the
// slowest world deltas waited (a runtime trace, against 7 % overall). At
// GOGC=400 it runs about a quarter as often, and the heap may grow to
// five times the live data instead of twice.
//
// Apply sets GOGC=400 unless the environment sets GOGC, and a soft memory
// limit of a quarter of the machine's memory unless it sets GOMEMLIMIT,
// so that a large heap is collected more often rather than grown fivefold
// (Go's "A Guide to the Go Garbage Collector", "Memory limit").
package gcpolicy
