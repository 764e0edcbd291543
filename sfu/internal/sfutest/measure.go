package sfutest

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Percentile is the p-th percentile (0..100) of samples (nearest rank), 0
// if there are none. It sorts samples.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	i := int(p/100*float64(len(samples))+0.5) - 1
	return samples[min(max(i, 0), len(samples)-1)]
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// ProcessCPU is the CPU time (user + system) process pid has used so far,
// from /proc/<pid>/stat (proc(5): fields 14 utime and 15 stime, in clock
// ticks).
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("sfutest: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("sfutest: /proc/%d/stat: no command name", pid)
	}
	fields := bytes.Fields(b[i+1:]) // fields[0] is field 3 (state)
	if len(fields) < 13 {
		return 0, fmt.Errorf("sfutest: /proc/%d/stat: %d fields", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] { // fields 14 and 15
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sfutest: /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// Await polls cond every 10 ms until it holds or timeout passes, then
// fails tb with what. It is a condition wait with a deadline, the only kind
// the SFU tests use.
func Await(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if err := AwaitErr(timeout, cond); err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// AwaitErr is Await returning an error instead of failing a test.
func AwaitErr(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not true after %v", timeout)
		}
		<-t.C
	}
	return nil
}
