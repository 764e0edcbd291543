package main

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

type fakeComponent struct {
	name     string
	startErr error
	closeErr error
	events   *[]string
}

func (f *fakeComponent) Start(context.Context) error {
	*f.events = append(*f.events, "start "+f.name)
	return f.startErr
}

func (f *fakeComponent) Close() error {
	*f.events = append(*f.events, "close "+f.name)
	return f.closeErr
}

func TestComponents(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name       string
		comps      []fakeComponent
		wantEvents []string
		wantStart  string // error from the failing start, if any
		wantClose  string
	}{
		{
			name:       "closed in reverse order",
			comps:      []fakeComponent{{name: "storage"}, {name: "rooms"}, {name: "http"}},
			wantEvents: []string{"start storage", "start rooms", "start http", "close http", "close rooms", "close storage"},
		},
		{
			name:       "failed start closes only those started",
			comps:      []fakeComponent{{name: "storage"}, {name: "rooms", startErr: boom}, {name: "http"}},
			wantEvents: []string{"start storage", "start rooms", "close storage"},
			wantStart:  "starting rooms: boom",
		},
		{
			name:       "close errors are collected and closing goes on",
			comps:      []fakeComponent{{name: "storage", closeErr: boom}, {name: "http", closeErr: boom}},
			wantEvents: []string{"start storage", "start http", "close http", "close storage"},
			wantClose:  "closing http: boom\nclosing storage: boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			cs := &components{log: slog.New(slog.DiscardHandler)}
			var startErr error
			for i := range tt.comps {
				c := &tt.comps[i]
				c.events = &events
				if startErr = cs.start(context.Background(), c.name, c); startErr != nil {
					break
				}
			}
			if (startErr == nil) != (tt.wantStart == "") || startErr != nil && startErr.Error() != tt.wantStart {
				t.Errorf("start error = %v, want %q", startErr, tt.wantStart)
			}
			closeErr := cs.closeAll()
			if (closeErr == nil) != (tt.wantClose == "") || closeErr != nil && closeErr.Error() != tt.wantClose {
				t.Errorf("closeAll error = %v, want %q", closeErr, tt.wantClose)
			}
			if err := cs.closeAll(); err != nil {
				t.Errorf("second closeAll = %v", err)
			}
			if !reflect.DeepEqual(events, tt.wantEvents) {
				t.Errorf("events:\n got %s\nwant %s", strings.Join(events, ", "), strings.Join(tt.wantEvents, ", "))
			}
		})
	}
}
