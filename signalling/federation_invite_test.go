package signalling_test

import (
	"context"
	"encoding/json"
	"errors"
)

// The invite, leave, knock and query methods of the fake federation
// (federation_edu_test.go): these tests reach no other server.

var errNoRemote = errors.New("fake federation: no other servers")

func (f *fakeFederation) Invite(context.Context, string, string, json.RawMessage, []json.RawMessage) (json.RawMessage, error) {
	return nil, errNoRemote
}

func (f *fakeFederation) Leave(context.Context, string, string, []string) (json.RawMessage, error) {
	return nil, errNoRemote
}

func (f *fakeFederation) Knock(context.Context, string, string, []string, map[string]any) (json.RawMessage, []json.RawMessage, error) {
	return nil, nil, errNoRemote
}

func (f *fakeFederation) QueryDirectory(context.Context, string) (string, []string, error) {
	return "", nil, errNoRemote
}

func (f *fakeFederation) QueryProfile(context.Context, string, string) (map[string]json.RawMessage, error) {
	return nil, errNoRemote
}
