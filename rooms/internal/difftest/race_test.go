//go:build race

package difftest

// raceEnabled: the race detector slows the comparisons down five to ten
// times, so TestDifferential generates fewer graphs under it.
const raceEnabled = true
