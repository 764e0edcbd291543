// Package syncer is the /sync engine (Client-Server API, "Syncing"): it
// follows the event stream as the room service stores events, keeps an
// in-memory window of recent events and every user's room memberships,
// and answers initial and incremental syncs, long-polling until something
// for the caller is stored. The realtime WebSocket's sync channel is
// served by the same engine, so both transports deliver exactly the same
// data for the same tokens.
//
// # The tailer
//
// One goroutine, poked by the room service's Listener after every commit,
// reads storage's event stream from its last position. Reading from
// storage rather than taking the events from the Listener is what makes
// delivery gap-free: storage publishes stream positions in commit order,
// while Listener calls from different rooms' workers can arrive in any
// order. Each event read is appended to the window (a ring of the most
// recent events), membership changes update the index, and the members of
// the event's room are woken through the stream.Hub.
//
// # Tokens
//
// A sync token (stream.Token) is a position in the event stream, the aux
// stream and the typing counter. An incremental sync returns everything
// in (since, next]; the window answers it from memory unless since is
// older than the window, when the affected rooms are answered like an
// initial sync with limited timelines.
//
// # Fan-out
//
// A message wakes every member of its room at once. For each member who
// was joined throughout (since, next], the room's section is the same
// events rendered the same way, so it is built once and shared (see
// shared.go): a room of N members costs one rendering per message, plus
// per member only what is theirs (unread counts, receipts, account data,
// typing, and the sender device's transaction IDs).
//
// # State after
//
// With use_state_after (MSC4222, or its unstable name) each room carries
// state_after, the state at the end of its timeline with the timeline's
// own state events included, instead of state, the state at its start
// (stateafter.go). An incremental section's state_after also reads
// storage's record of the room's current state changes in the window,
// so a change state resolution made with no state event of its own (two
// branches of the room meeting) reaches the client too. Such sections
// are shared only with requests asking for the same.
package syncer
