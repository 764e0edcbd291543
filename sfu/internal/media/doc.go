// Package media is the SFU's RTP forwarding engine.
//
// A Receiver reads one published track (one *webrtc.TrackRemote per
// simulcast layer), keeps a short per-layer packet cache and fans every
// packet out to the DownTracks bound to subscriber peer connections. A
// DownTrack is a webrtc.TrackLocal that rewrites sequence numbers,
// timestamps and VP8 picture IDs so that a subscriber sees one continuous
// stream while the SFU switches simulcast layers underneath it (only ever at
// a key frame of the new layer), answers NACKs from the cache and turns PLI
// and FIR into throttled key-frame requests to the publisher. An Allocator
// shares one subscriber's downlink estimate (GCC) among that subscriber's
// video DownTracks and, since GCC never estimates far above what is
// received, probes a higher layer now and then with the media itself. The
// Receiver reports the highest layer anyone still needs so the publisher can
// pause the rest (dynacast).
//
// Work a subscriber can cause is bounded: a packet is resent at most three
// times, no sooner than 100 ms apart, and only from a 2 s cache; key-frame
// requests reach a publisher at most every 500 ms per layer however many
// subscribers send PLIs. A publisher gets one read loop per layer: a new
// track for a layer (duplicate RIDs, a new SSRC) replaces the old one.
//
// Concurrency: each incoming layer has one read goroutine that does all the
// per-packet work (cache, fan-out, writes) with buffers it owns, so the
// forwarding path does not allocate; each DownTrack has one goroutine
// reading the subscriber's RTCP (and passing on its PLIs); each Receiver has
// one housekeeping goroutine that requests key frames for pending switches
// and reports dynacast changes. No callback runs on the packet path or under
// a lock.
//
// Payloads are never decoded: the engine reads only RTP headers, the RFC 6464
// audio-level extension and codec payload descriptors (VP8 descriptor, H.264
// NAL header, VP9 descriptor, AV1 aggregation header), all of which stay in
// the clear under LiveKit's end-to-end encryption, so encrypted calls pass
// through.
package media
