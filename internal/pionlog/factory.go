package pionlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// Factory is a pion logging.LoggerFactory writing to a slog.Logger.
type Factory struct {
	Logger  *slog.Logger
	Limiter *Limiter
}

// NewLogger implements logging.LoggerFactory.
func (f *Factory) NewLogger(scope string) logging.LeveledLogger {
	log := f.Logger.With("pion", scope)
	return &leveled{log: log, lim: f.Limiter, scope: scope, trace: log.Enabled(context.Background(), levelTrace)}
}

type leveled struct {
	log   *slog.Logger
	lim   *Limiter
	scope string
	// trace is whether the logger took trace lines when it was made.
	// pion traces several times per SCTP packet; asking the handler each
	// time cost about 1 % of the SFU's CPU in the world-state benchmark.
	trace bool
}

// levelTrace is pion's trace level in slog terms.
const levelTrace = slog.LevelDebug - 4

// pion's info lines are per-event detail (a permission refused, a packet
// from a peer without permission) that Plexus reports itself, rate-limited,
// with more context; they go out at debug.
func (l *leveled) Trace(msg string) {
	if l.trace {
		l.emit(levelTrace, msg, msg, nil)
	}
}

func (l *leveled) Tracef(f string, args ...any) {
	if l.trace {
		l.emit(levelTrace, f, f, args)
	}
}
func (l *leveled) Debug(msg string)             { l.emit(slog.LevelDebug, msg, msg, nil) }
func (l *leveled) Debugf(f string, args ...any) { l.emit(slog.LevelDebug, f, f, args) }
func (l *leveled) Info(msg string)              { l.emit(slog.LevelDebug, msg, msg, nil) }
func (l *leveled) Infof(f string, args ...any)  { l.emit(slog.LevelDebug, f, f, args) }
func (l *leveled) Warn(msg string)              { l.emit(slog.LevelWarn, msg, msg, nil) }
func (l *leveled) Warnf(f string, args ...any)  { l.emit(slog.LevelWarn, f, f, args) }
func (l *leveled) Error(msg string)             { l.emit(slog.LevelError, msg, msg, nil) }
func (l *leveled) Errorf(f string, args ...any) { l.emit(slog.LevelError, f, f, args) }

// emit logs one line if its level is enabled and its format (the key: one
// format is one kind of event) is within the limiter's budget. The level is
// checked first so that disabled lines cost no formatting.
func (l *leveled) emit(level slog.Level, key, format string, args []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := format
	if args != nil {
		msg = fmt.Sprintf(format, args...)
	}
	if level >= slog.LevelWarn && closing(msg) {
		// Closing a peer connection or a relay makes pion's read and write
		// loops fail on the sockets being closed under them, and each says
		// so at warn or error. That is the normal end of a connection.
		level = slog.LevelDebug
		if !l.log.Enabled(ctx, level) {
			return
		}
	}
	var suppressed uint64
	if l.lim != nil {
		ok, n := l.lim.Allow(l.scope + "\x00" + key)
		if !ok {
			return
		}
		suppressed = n
	}
	if suppressed > 0 {
		l.log.Log(ctx, level, msg, "suppressed", suppressed)
		return
	}
	l.log.Log(ctx, level, msg)
}

// closedMarks are what pion's errors say when the socket or stream they
// used was closed on purpose.
var closedMarks = []string{
	"closed pipe",
	"use of closed network connection",
	"is already closed",
	"stream is closed",
	"conn is closed",
}

func closing(msg string) bool {
	for _, m := range closedMarks {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}
