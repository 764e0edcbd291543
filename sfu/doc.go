// Package sfu is Plexus's selective forwarding unit: it forwards audio,
// video and data among the participants of a room and speaks LiveKit's
// client protocol, so that LiveKit's SDKs and Element Call work against
// it unchanged. It knows nothing of Matrix: rooms and participants are
// opaque names from the access token.
//
// Server.Handler serves the signalling WebSocket "/rtc" and
// "/rtc/validate" (sfu/internal/signal); rooms and participants live in
// sfu/internal/rtc, RTP forwarding in sfu/internal/media, the data relay
// and AR/VR world state in sfu/internal/data. All media shares one UDP
// port (an ICE UDP mux, Config.UDPPort) plus one ICE-TCP port.
//
// A room's world snapshot is loaded from Deps.World when the room starts
// (before anyone can receive it), saved at most every
// Config.WorldSaveInterval while it changes, and once when the room
// closes.
package sfu
