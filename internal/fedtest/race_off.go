//go:build !race

package fedtest

const raceEnabled = false
