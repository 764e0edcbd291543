package latency

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	// Every duration lies in its bucket's range, and the buckets are
	// contiguous and increasing.
	prev := time.Duration(-1)
	for i := range nBuckets {
		u := upper(i)
		if u <= prev {
			t.Fatalf("bucket %d upper %d not above bucket %d's %d", i, u, i-1, prev)
		}
		if i < nBuckets-1 {
			if got := bucket(uint64(u)); got != i {
				t.Fatalf("upper(%d)=%d lands in bucket %d", i, u, got)
			}
			if got := bucket(uint64(u) + 1); got != i+1 {
				t.Fatalf("upper(%d)+1 lands in bucket %d, want %d", i, got, i+1)
			}
		}
		prev = u
	}
	if got := bucket(1 << 62); got != nBuckets-1 {
		t.Fatalf("huge duration in bucket %d", got)
	}
}

func TestQuantileAccuracy(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	ds := make([]time.Duration, 100000)
	for i := range ds {
		// Log-uniform from 1 µs to 1 s.
		ds[i] = time.Duration(1e3 * math.Pow(1e6, r.Float64()))
		h.Record(ds[i])
	}
	slices.Sort(ds)
	d := h.Snapshot()
	if d.Count() != uint64(len(ds)) {
		t.Fatalf("count %d", d.Count())
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		want := ds[min(int(q*float64(len(ds))+0.5), len(ds))-1]
		got := d.Quantile(q)
		if got < want || float64(got) > float64(want)*(1+1.0/sub)+1 {
			t.Errorf("q=%v: got %v, exact %v", q, got, want)
		}
	}
}

func TestSince(t *testing.T) {
	var h Histogram
	for range 100 {
		h.Record(time.Second)
	}
	a := h.Snapshot()
	for range 10 {
		h.Record(time.Millisecond)
	}
	h.Record(-time.Second)
	d := h.Snapshot().Since(&a)
	if d.Count() != 11 {
		t.Fatalf("count %d", d.Count())
	}
	if q := d.Quantile(0.5); q < time.Millisecond || q > time.Millisecond*17/16 {
		t.Fatalf("p50 %v", q)
	}
	if q := d.Quantile(0.01); q != 0 {
		t.Fatalf("p1 %v, want the negative one as 0", q)
	}
	var sum Dist
	sum.Add(&a)
	sum.Add(&d)
	if sum.Count() != 111 {
		t.Fatalf("merged count %d", sum.Count())
	}
	var empty Dist
	if empty.Quantile(0.99) != 0 {
		t.Fatal("empty quantile")
	}
}
