package latency

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits = 4 // 16 buckets per power of two
	sub     = 1 << subBits
	// Buckets cover 0 to 2^40 ns (about 18 minutes); longer durations
	// land in the last one.
	octaves  = 40
	nBuckets = (octaves-subBits+1)*sub + sub
)

// bucket maps a duration in nanoseconds to its bucket: values below sub
// exactly, above that by their top subBits+1 bits.
func bucket(ns uint64) int {
	if ns < sub {
		return int(ns)
	}
	o := bits.Len64(ns) - 1 // ns in [2^o, 2^(o+1))
	i := (o-subBits+1)*sub + int(ns>>(o-subBits)&(sub-1))
	return min(i, nBuckets-1)
}

// upper is the largest duration that falls in bucket i.
func upper(i int) time.Duration {
	if i < sub {
		return time.Duration(i)
	}
	o := i/sub + subBits - 1
	low := uint64(1)<<o | uint64(i%sub)<<(o-subBits)
	return time.Duration(low + 1<<(o-subBits) - 1)
}

// Histogram counts durations. The zero value is ready; it must not be
// copied after first use.
type Histogram struct {
	counts [nBuckets]atomic.Uint64
}

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucket(uint64(max(d, 0)))].Add(1)
}

// Snapshot copies the counts so far.
func (h *Histogram) Snapshot() Dist {
	var d Dist
	for i := range h.counts {
		d.counts[i] = h.counts[i].Load()
	}
	return d
}

// Dist is a histogram's counts at one moment: a value, cheap to compare
// and subtract.
type Dist struct {
	counts [nBuckets]uint64
}

// Count is the number of durations recorded.
func (d *Dist) Count() uint64 {
	var n uint64
	for _, c := range d.counts {
		n += c
	}
	return n
}

// Add adds o's counts to d's (merging the histograms of several rooms).
func (d *Dist) Add(o *Dist) {
	for i := range d.counts {
		d.counts[i] += o.counts[i]
	}
}

// Since returns the durations recorded after earlier was taken from the
// same histogram.
func (d Dist) Since(earlier *Dist) Dist {
	for i := range d.counts {
		d.counts[i] -= earlier.counts[i]
	}
	return d
}

// Quantile returns the upper bound of the bucket holding the q-th
// quantile (0 < q <= 1), 0 for an empty distribution.
func (d *Dist) Quantile(q float64) time.Duration {
	n := d.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i, c := range d.counts {
		seen += c
		if seen >= rank {
			return upper(i)
		}
	}
	return upper(nBuckets - 1)
}

// String summarises the distribution for logs.
func (d Dist) String() string {
	return fmt.Sprintf("{n=%d p50=%v p99=%v max=%v}", d.Count(), d.Quantile(0.5), d.Quantile(0.99), d.Quantile(1))
}
