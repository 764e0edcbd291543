package delayed

import (
	"context"
	"errors"
	"fmt"
	"time"
)

const (
	// dueBatch is how many due events one read claims.
	dueBatch = 64
	// maxSleep bounds the timer so a jump of the wall clock (a suspended
	// machine, an injected test clock) is noticed within it.
	maxSleep = time.Minute
	// retryAfter is how long the loop waits after a failed database read.
	retryAfter = 5 * time.Second
)

// run is the one timer goroutine: it deletes superseded state events,
// sends what is due, then sleeps until the next send time or a poke.
func (s *Service) run() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	timer := time.NewTimer(maxSleep)
	defer timer.Stop()
	for {
		sleep := s.round(ctx)
		s.rounds.Add(1)
		if ctx.Err() != nil {
			return
		}
		timer.Reset(sleep)
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// round does one pass of the loop and says how long to sleep.
func (s *Service) round(ctx context.Context) time.Duration {
	s.mu.Lock()
	cancels := s.cancels
	s.cancels = nil
	s.mu.Unlock()
	if err := s.deleteIDs(ctx, cancels); err != nil {
		s.log.Error("cancelling superseded delayed state events failed", "err", err)
	}
	for {
		ids, err := s.dueIDs(ctx, s.deps.Now().UnixMilli(), dueBatch)
		if ctx.Err() != nil {
			return 0 // closing
		}
		if err != nil {
			s.log.Error("reading due delayed events failed; retrying", "err", err)
			return retryAfter
		}
		for _, id := range ids {
			r, err := s.claim(ctx, id, "")
			if err != nil && !errors.Is(err, errNotFound) {
				s.log.Error("claiming a due delayed event failed", "delay_id", id, "err", err)
			}
			if r == nil {
				continue // cancelled, or claimed by a "send" meanwhile
			}
			s.fire(ctx, r)
			if ctx.Err() != nil {
				return 0
			}
		}
		if len(ids) < dueBatch {
			break
		}
	}
	next, err := s.nextSendAt(ctx)
	if ctx.Err() != nil {
		return 0
	}
	if err != nil {
		s.log.Error("reading the next delayed event failed; retrying", "err", err)
		return retryAfter
	}
	s.nextAt.Store(next)
	if next == 0 {
		return maxSleep
	}
	return min(max(time.Duration(next-s.deps.Now().UnixMilli())*time.Millisecond, 0), maxSleep)
}

// fire sends a claimed row on its timer. A failure is logged and the row
// removed, as Synapse does: its cause (the user left, lost the power
// level) rarely goes away by itself. Stopping mid-send keeps the claim,
// which the next Start releases, so the event is not lost.
func (s *Service) fire(ctx context.Context, r *record) {
	log := s.log.With("delay_id", r.id, "room", r.roomID, "user", r.userID, "type", r.typ)
	id, err := s.deps.Sender.Send(ctx, r.id, r.event())
	if err != nil && ctx.Err() != nil {
		return
	}
	if err != nil {
		log.Warn("sending a delayed event failed; it is dropped", "err", err)
	} else {
		log.Debug("delayed event sent", "event", id)
	}
	if err := s.remove(ctx, r); err != nil {
		log.Error("removing a sent delayed event failed", "err", err)
	}
}

// sendNow is the "send" action: the event is sent during the request. A
// failure answers the request as a failed /send would and keeps the event
// scheduled (MSC4140, "Managing scheduled delayed events").
func (s *Service) sendNow(ctx context.Context, delayID, owner string) error {
	r, err := s.claim(ctx, delayID, owner)
	if err != nil {
		return err
	}
	if r == nil {
		return nil // the timer is sending it: the outcome the caller asked for
	}
	if _, err := s.deps.Sender.Send(ctx, r.id, r.event()); err != nil {
		if uerr := s.unclaim(context.WithoutCancel(ctx), r.id); uerr != nil {
			s.log.Error("putting a delayed event back on the schedule failed", "delay_id", r.id, "err", uerr)
		}
		return fmt.Errorf("delayed: send %s: %w", r.id, err)
	}
	if err := s.remove(context.WithoutCancel(ctx), r); err != nil {
		s.log.Error("removing a sent delayed event failed", "delay_id", r.id, "err", err)
	}
	return nil
}
