package gcpolicy

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// restore puts the collector's settings back after a test changed them.
func restore(t *testing.T) {
	percent := debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestApplyDefaults(t *testing.T) {
	restore(t)
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
	s := Apply(env(nil))
	if got := debug.SetGCPercent(100); got != Percent || s.Percent != Percent {
		t.Errorf("GOGC %d (reported %d), want %d", got, s.Percent, Percent)
	}
	total := memTotal("/proc/meminfo")
	if total == 0 {
		t.Fatal("no MemTotal in /proc/meminfo on this Linux machine")
	}
	if got := debug.SetMemoryLimit(-1); got != total/4 || s.Limit != total/4 {
		t.Errorf("memory limit %d (reported %d), want a quarter of %d", got, s.Limit, total)
	}
}

func TestApplyLeavesTheEnvironmentsChoice(t *testing.T) {
	restore(t)
	debug.SetGCPercent(150)
	debug.SetMemoryLimit(1 << 40)
	s := Apply(env(map[string]string{"GOGC": "150", "GOMEMLIMIT": "1TiB"}))
	if s != (Settings{}) {
		t.Errorf("Apply set %+v over the environment's settings", s)
	}
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("GOGC %d, want the environment's 150", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("memory limit %d, want the environment's 1 TiB", got)
	}
}

func TestMemTotal(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		text string
		want int64
	}{
		{"MemTotal:       24567892 kB\nMemFree: 1 kB\n", 24567892 * 1024},
		{"MemFree: 1 kB\n", 0},
		{"MemTotal: lots kB\n", 0},
		{"MemTotal: 12 MB\n", 0},
		{"MemTotal: -5 kB\n", 0},
	} {
		p := filepath.Join(dir, "meminfo")
		if err := os.WriteFile(p, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := memTotal(p); got != c.want {
			t.Errorf("memTotal(%q) = %d, want %d", c.text, got, c.want)
		}
	}
	if got := memTotal(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("missing file: %d, want 0", got)
	}
}
