package cable

import (
	"runtime"
	"sync"
)

// workers run the deep-stack work of the channels and commands (syncing,
// encoding, room actions) on a few long-lived goroutines. Run on a
// subscription's own goroutine, which is idle almost always, that work
// would leave the goroutine's stack grown (the collector only shrinks a
// stack using under a quarter of it), costing every idle connection
// kilobytes; run on a fresh goroutine each time, it would pay for growing
// a stack on every delivery. The workers' stacks grow once and stay.
type workers struct {
	jobs chan func()
	stop chan struct{}
	wg   sync.WaitGroup
}

func newWorkers(n int) *workers {
	if n <= 0 {
		n = 4 * runtime.GOMAXPROCS(0)
	}
	w := &workers{jobs: make(chan func()), stop: make(chan struct{})}
	w.wg.Add(n)
	for range n {
		go w.loop()
	}
	return w
}

func (w *workers) loop() {
	defer w.wg.Done()
	for {
		select {
		case job := <-w.jobs:
			job()
		case <-w.stop:
			return
		}
	}
}

// run runs fn on an idle worker, or on a fresh goroutine when every
// worker is busy (a slow database must not hold up every connection), and
// returns its result.
func (w *workers) run(fn func() bool) bool {
	return w.call(newCall(fn))
}

// A call is a function run through the workers again and again (a
// feed's step) without allocating each time. One goroutine at a time
// may use it.
type call struct {
	fn   func() bool
	job  func()
	done chan bool
}

func newCall(fn func() bool) *call {
	c := &call{fn: fn, done: make(chan bool, 1)}
	c.job = func() { c.done <- c.fn() }
	return c
}

// call is run for a call.
func (w *workers) call(c *call) bool {
	select {
	case w.jobs <- c.job:
	default:
		go c.job()
	}
	return <-c.done
}

// close stops the workers; later runs use fresh goroutines. It is
// idempotent only through Server.Close's once.
func (w *workers) close() {
	close(w.stop)
	w.wg.Wait()
}
