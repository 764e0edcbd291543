package flight

import (
	"context"
	"sync"
)

// Group runs one call per key at a time and hands its result to every
// caller that asked meanwhile. fn runs in its own goroutine so that each
// caller can stop waiting when its context ends without cancelling the
// call for the others; fn must bound its own duration.
type Group[T any] struct {
	wg    sync.WaitGroup // counts running calls, for Wait
	mu    sync.Mutex     // guards calls
	calls map[string]*call[T]
}

type call[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// Do returns fn's result for key, sharing a call already in progress.
func (f *Group[T]) Do(ctx context.Context, key string, fn func() (T, error)) (T, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*call[T]{}
	}
	c, ok := f.calls[key]
	if !ok {
		c = &call[T]{done: make(chan struct{})}
		f.calls[key] = c
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			c.val, c.err = fn()
			f.mu.Lock()
			delete(f.calls, key)
			f.mu.Unlock()
			close(c.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Wait blocks until every running call has returned.
func (f *Group[T]) Wait() { f.wg.Wait() }
