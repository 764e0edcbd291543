package gcpolicy

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Percent is the collector's GOGC percentage unless GOGC is set.
const Percent = 400

// Settings is what Apply set; a zero field was left to the environment
// (or, for Limit, the machine's memory was unknown).
type Settings struct {
	Percent int   // GOGC
	Limit   int64 // soft memory limit in bytes
}

// Apply sets the collector's percentage and soft memory limit for the
// server process unless the environment sets them (package doc).
// getenv is os.Getenv outside tests.
func Apply(getenv func(string) string) Settings {
	var s Settings
	if getenv("GOGC") == "" {
		debug.SetGCPercent(Percent)
		s.Percent = Percent
	}
	if getenv("GOMEMLIMIT") == "" {
		if total := memTotal("/proc/meminfo"); total > 0 {
			s.Limit = total / 4
			debug.SetMemoryLimit(s.Limit)
		}
	}
	return s
}

// memTotal reads MemTotal from a Linux meminfo file, in bytes; 0 when
// the file is missing or unreadable.
func memTotal(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		// "MemTotal:       24567892 kB"
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || kb <= 0 {
			return 0
		}
		return kb * 1024
	}
	return 0
}
