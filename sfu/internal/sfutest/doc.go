// Package sfutest holds what the SFU's end-to-end tests and benchmarks share:
// the real-media fixtures (VP8 simulcast layers in IVF, Opus in Ogg, made by
// sfu/testdata/gen.sh), a LiveKit SDK (lksdk) publisher that sends them in
// real time and answers key-frame requests the way an encoder does, a
// subscriber-side reader that counts packets, sequence gaps and key frames
// and measures latency, an interceptor that drops packets on the way to a
// subscriber, and the measuring helpers (percentiles, process CPU).
//
// Latency without touching the media: the payload is real VP8 and Opus, and
// the SFU rewrites sequence numbers, timestamps and VP8 picture IDs, so
// neither an RTP timestamp nor a header extension survives the trip
// unchanged. The codec payload after the VP8 payload descriptor does (the
// SFU never alters media), so the publisher notes the send time of each
// packet under a fingerprint of those bytes (a Ledger) and a subscriber in
// the same process looks its arrivals up. The clips are made so that no two
// packets within a loop carry the same bytes (a moving test pattern, a
// chirp rather than a steady tone).
//
// It is a test helper: it imports lksdk and pion but nothing of Plexus.
package sfutest
