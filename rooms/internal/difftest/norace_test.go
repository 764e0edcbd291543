//go:build !race

package difftest

// raceEnabled: see race_test.go.
const raceEnabled = false
