package federation

import (
	"context"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/queue"
)

// This file is federation's part of the operator page (issue 7): the
// destinations it sends to, their backlog and backoff.

// maxStatusDestinations bounds the destinations one status lists: those
// with work waiting first, then the rest by name.
const maxStatusDestinations = 1000

// Status is federation's section of the operator page.
type Status struct {
	// PendingPDUs and PendingEDUs are the queued totals over every
	// destination; BackingOff counts the destinations waiting out a
	// backoff. These are the numbers the page charts.
	PendingPDUs int `json:"pending_pdus"`
	PendingEDUs int `json:"pending_edus"`
	BackingOff  int `json:"destinations_backing_off"`
	// Destinations are the servers this one sends to.
	Destinations []DestinationStatus `json:"destinations"`
	// More counts the destinations left out of the list.
	More int `json:"more_destinations,omitempty"`
}

// DestinationStatus is one destination's queue. Times are Unix
// milliseconds; 0 (omitted) is never. The last success and failure are
// those since this process started.
type DestinationStatus struct {
	Destination string `json:"destination"`
	PendingPDUs int    `json:"pending_pdus"`
	PendingEDUs int    `json:"pending_edus"`
	// InFlight is the transaction being delivered, sent or waiting to be
	// resent.
	InFlight    string `json:"in_flight_txn,omitempty"`
	Failures    int64  `json:"failures"`
	RetryAt     int64  `json:"retry_at,omitempty"`
	BackingOff  bool   `json:"backing_off"`
	CatchingUp  bool   `json:"catching_up"`
	Sending     bool   `json:"sending"`
	LastSuccess int64  `json:"last_success,omitempty"`
	LastFailure int64  `json:"last_failure,omitempty"`
	LastError   string `json:"last_error,omitempty"`
}

// Status reports the outbound queue of every destination: the
// operator's signalling.StatusSource.
func (f *Federation) Status(ctx context.Context) (any, error) {
	dests, err := f.queue.Destinations(ctx)
	if err != nil {
		return nil, err
	}
	nowMS := f.sends.now().UnixMilli()
	st := &Status{Destinations: []DestinationStatus{}}
	busy, idle := []DestinationStatus{}, []DestinationStatus{}
	for _, d := range dests {
		ds := DestinationStatus{
			Destination: d.Name, PendingPDUs: d.PDUs, PendingEDUs: d.EDUs, InFlight: d.InFlight,
			Failures: d.Failures, RetryAt: d.RetryAtMS, BackingOff: d.RetryAtMS > nowMS,
			CatchingUp: d.CatchingUp, Sending: d.Running,
		}
		ds.LastSuccess, ds.LastFailure, ds.LastError = f.sends.last(d.Name)
		st.PendingPDUs += d.PDUs
		st.PendingEDUs += d.EDUs
		if ds.BackingOff {
			st.BackingOff++
		}
		if d.PDUs+d.EDUs > 0 || ds.BackingOff {
			busy = append(busy, ds)
		} else {
			idle = append(idle, ds)
		}
	}
	all := append(busy, idle...)
	st.Destinations = all[:min(len(all), maxStatusDestinations)]
	st.More = len(all) - len(st.Destinations)
	return st, nil
}

// sendLog is the queue's Sender, wrapped to note when each destination
// last took a transaction and last failed one: the database keeps only
// the backoff, not when it began.
type sendLog struct {
	next queue.Sender
	now  func() time.Time

	mu    sync.Mutex // guards dests
	dests map[string]*sendTimes
}

type sendTimes struct {
	success, failure int64 // Unix ms
	err              string
}

func newSendLog(next queue.Sender, now func() time.Time) *sendLog {
	if now == nil {
		now = time.Now
	}
	return &sendLog{next: next, now: now, dests: map[string]*sendTimes{}}
}

// Send implements queue.Sender.
func (l *sendLog) Send(ctx context.Context, destination, txnID string, txn *queue.Transaction) error {
	err := l.next.Send(ctx, destination, txnID, txn)
	if err != nil && ctx.Err() != nil {
		return err // shutting down: not the destination's failure
	}
	ts := l.now().UnixMilli()
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.dests[destination]
	if t == nil {
		t = &sendTimes{}
		l.dests[destination] = t
	}
	if err != nil {
		t.failure, t.err = ts, err.Error()
	} else {
		t.success = ts
	}
	return err
}

// last reports destination's last success and failure (0 if none since
// start) and the failure's error.
func (l *sendLog) last(destination string) (success, failure int64, errText string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.dests[destination]; t != nil {
		return t.success, t.failure, t.err
	}
	return 0, 0, ""
}
