package media

import "sync"

// waiters lets downloads of a created but not yet uploaded mxc:// URI wait
// for its upload (the timeout_ms parameter of GET .../download).
type waiters struct {
	mu sync.Mutex // guards m
	m  map[string]*waitEntry
}

type waitEntry struct {
	ch chan struct{} // closed by wake
	n  int           // waiters holding ch
}

func newWaiters() *waiters { return &waiters{m: map[string]*waitEntry{}} }

// watch returns a channel closed at the next wake(key), and a release
// function the caller must call when it stops waiting. Watch before
// checking the database, so that an upload finishing in between still
// closes the channel.
func (w *waiters) watch(key string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.m[key]
	if e == nil {
		e = &waitEntry{ch: make(chan struct{})}
		w.m[key] = e
	}
	e.n++
	return e.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		e.n--
		if e.n == 0 && w.m[key] == e {
			delete(w.m, key)
		}
	}
}

// wake wakes every watcher of key.
func (w *waiters) wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.m[key]; e != nil {
		close(e.ch)
		delete(w.m, key)
	}
}

// len is the number of keys watched (for tests: nothing leaks).
func (w *waiters) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}
