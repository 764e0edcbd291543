package signalling

import (
	"context"
	"time"

	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/delayed"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
	"github.com/plexus-chat/plexus/signalling/internal/roomapi"
)

// defaultDelayedManageRate is the default limit of the delayed event management
// requests per user: Element Call restarts each delayed leave every 5 s
// (0.2/s per device and call), and the rate Element Call's deployment
// guide gives Synapse (rc_delayed_event_mgmt: 1/s, bursts of 20) carries
// five such heartbeats of one user at once, with room for a reconnect's
// burst.
func defaultDelayedManageRate() ratelimit.Config { return ratelimit.Config{Rate: 1, Burst: 20} }

// newDelayed builds the delayed events service (MSC4140). It sends
// through s.rooms, built after it; the feed tells it of changes to rooms'
// current state so newer state cancels another user's delayed one.
func (s *Signalling) newDelayed(cfg Config, deps Deps) error {
	d, err := delayed.New(delayed.Config{
		MaxDelay:   cfg.MaxEventDelay,
		ManageRate: cfg.RateLimits.DelayedManage,
	}, delayed.Deps{
		DB: deps.DB, Sender: delayedSender{s},
		Logger: deps.Logger.With("component", "delayed"), Now: deps.Now,
	})
	if err != nil {
		return err
	}
	s.delayed = d
	deps.Feed.delayed.Store(d)
	return nil
}

// CurrentStateChanged implements rooms.CurrentStateListener: it hands
// the change to the delayed events service, once there is one.
func (f *Feed) CurrentStateChanged(room rooms.RoomID, changes []rooms.StateChange) {
	if d := f.delayed.Load(); d != nil {
		d.CurrentStateChanged(room, changes)
	}
}

// delayedSender sends delayed events through roomapi as their owner.
type delayedSender struct{ s *Signalling }

func (d delayedSender) Send(ctx context.Context, delayID string, ev delayed.Event) (string, error) {
	// The transaction ID makes a message event sent twice (a restart
	// between its append and the row's removal) one event.
	return d.s.rooms.SendAs(ctx, roomapi.DelayedEvent{
		UserID: ev.UserID, DeviceID: ev.DeviceID, RoomID: ev.RoomID,
		Type: ev.Type, StateKey: ev.StateKey, Content: ev.Content,
	}, "org.matrix.msc4140."+delayID)
}

// delayedScheduler is the delayed events service as roomapi's Delayer.
type delayedScheduler struct{ d *delayed.Service }

func (d delayedScheduler) Schedule(ctx context.Context, ev roomapi.DelayedEvent, delay time.Duration) (string, error) {
	return d.d.Schedule(ctx, delayed.Event{
		UserID: ev.UserID, DeviceID: ev.DeviceID, RoomID: ev.RoomID,
		Type: ev.Type, StateKey: ev.StateKey, Content: ev.Content,
	}, delay)
}
