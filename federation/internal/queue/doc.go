// Package queue is the federation outbound queue: it delivers PDUs and EDUs
// to other servers in transactions (Server-Server API, "Transactions":
// PUT /_matrix/federation/v1/send/{txnId}, at most 50 PDUs and 100 EDUs).
//
// Every enqueued item is a row in the database before anything is sent,
// one row per destination, so nothing is lost when Plexus restarts or a
// destination is down. Each destination with work has one worker
// goroutine, which keeps at most one transaction in flight: it picks the
// oldest waiting rows, records them under a new transaction ID, and
// retries that same ID with the same contents until the destination
// answers 200 (the spec: the sender "must wait and retry for a 200 OK
// response before sending a transaction with a different txnId"); only
// then are the rows deleted. A restart resumes the recorded transaction.
//
// A failed attempt backs the destination off exponentially, from
// Config.MinBackoff doubling to Config.MaxBackoff; the next attempt time
// is stored, so a restart does not hammer a dead server. Reset, called
// when the destination contacts us, ends the backoff at once.
//
// A destination that failed catches up instead of replaying its whole
// backlog: while its waiting PDUs exceed Config.CatchUpAfter only the
// newest waiting PDU of each room is kept, and the peer fetches the gap
// itself with /get_missing_events when that PDU's prev_events are unknown
// to it (Server-Server API, "Backfilling and retrieving missing events").
// EDUs are never collapsed: to-device messages carry end-to-end encryption
// keys and call signalling and must arrive, in order. The one exception is
// m.typing: a typing notification older than StaleTyping when a
// transaction is built is dropped, since it no longer says anything true
// and the receiver times typing out on its own.
//
// A transaction is "the destination's rows up to these IDs" (row IDs
// increase in commit order and a transaction always takes the oldest
// rows), so taking and retiring one writes no per-row marks. Concurrent
// writes (enqueues from many rooms, the bookkeeping of many workers) share
// one commit per group (group.go): a commit costs far more than the
// statements in it.
//
// Destinations never wait for each other: workers share no lock across
// I/O, and only a bound on the number of sends in flight at once
// (Config.MaxInFlight) is common to all of them.
package queue
