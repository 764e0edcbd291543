package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// component is anything serve starts and must stop: the storage, the room
// service, the HTTP server. Close must be idempotent and wait for whatever
// the component started.
type component interface {
	Start(ctx context.Context) error
	Close() error
}

// components starts components in order and closes them in reverse, so
// that each closes before the things it depends on: the HTTP server stops
// taking requests before the rooms stop, and the rooms before the database.
type components struct {
	log     *slog.Logger
	started []named
}

type named struct {
	name string
	c    component
}

// start starts c, or returns its error. On error, the caller still calls
// closeAll to close the ones already started.
func (cs *components) start(ctx context.Context, name string, c component) error {
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	cs.log.Debug("started", "component", name)
	cs.started = append(cs.started, named{name, c})
	return nil
}

// adopt records an already open resource (one whose constructor did the
// starting) so closeAll closes it in order.
func (cs *components) adopt(name string, c io.Closer) {
	cs.started = append(cs.started, named{name, closerComponent{c}})
}

type closerComponent struct{ io.Closer }

func (closerComponent) Start(context.Context) error { return nil }

// closeAll closes every started component, last started first, and returns
// all their errors. A second call does nothing.
func (cs *components) closeAll() error {
	var errs []error
	for i := len(cs.started) - 1; i >= 0; i-- {
		n := cs.started[i]
		if err := n.c.Close(); err != nil {
			cs.log.Error("closing", "component", n.name, "err", err)
			errs = append(errs, fmt.Errorf("closing %s: %w", n.name, err))
			continue
		}
		cs.log.Debug("closed", "component", n.name)
	}
	cs.started = nil
	return errors.Join(errs...)
}
