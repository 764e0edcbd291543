// Package latency is a lock-free latency histogram for hot paths.
//
// Record costs one atomic add; a Snapshot taken at two moments gives, by
// difference (Dist.Since), the distribution of what was recorded between
// them, and snapshots of several histograms merge (Dist.Add). Quantiles
// are bucket upper bounds, never below the true value and at most a
// sixteenth of an octave (about 6 %) above it: buckets are 16 per power
// of two from 16 ns to 2^40 ns (about 18 minutes).
//
// The SFU times world changes through its relay with it (sfu/internal/data
// Config.RelayLatency), reported in sfu.Stats and the SFU benchmarks.
package latency
