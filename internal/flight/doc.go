// Package flight shares one call among the concurrent callers that ask for
// the same key (the idea of x/sync/singleflight, with generic results and
// per-caller cancellation).
package flight
