package data

// ring is a fixed-capacity FIFO; absolute positions (seq) let an index
// into it (the lossy coalescing map) tell whether an item is still queued.
type ring[T any] struct {
	buf  []T
	head uint64 // seq of the oldest item
	n    int
}

func newRing[T any](capacity int) ring[T] { return ring[T]{buf: make([]T, capacity)} }

func (r *ring[T]) len() int   { return r.n }
func (r *ring[T]) full() bool { return r.n == len(r.buf) }

// push appends v and returns its seq; the ring must not be full.
func (r *ring[T]) push(v T) uint64 {
	seq := r.head + uint64(r.n)
	r.buf[seq%uint64(len(r.buf))] = v
	r.n++
	return seq
}

// at returns the queued item at seq, or nil if it has left the ring.
func (r *ring[T]) at(seq uint64) *T {
	if seq < r.head || seq >= r.head+uint64(r.n) {
		return nil
	}
	return &r.buf[seq%uint64(len(r.buf))]
}

func (r *ring[T]) peek() *T { return &r.buf[r.head%uint64(len(r.buf))] }

// pop removes and returns the oldest item with its seq; the ring must
// not be empty.
func (r *ring[T]) pop() (T, uint64) {
	var zero T
	i := r.head % uint64(len(r.buf))
	v := r.buf[i]
	r.buf[i] = zero // let the bytes go
	seq := r.head
	r.head++
	r.n--
	return v, seq
}
