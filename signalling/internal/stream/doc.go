// Package stream holds what every producer and consumer of /sync data
// shares: the sync token (a position in each of the server's streams) and
// the Hub that wakes a user's waiting /sync requests and realtime
// connections the moment something for them is stored.
//
// The streams are: room events (storage's event stream positions), the
// aux stream (storage.Tx.NextPos: to-device messages, account data,
// receipts, device list and key changes) and typing (in memory only, so
// its position restarts at 0 with the process).
package stream
