//go:build !unix

package stateres

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
