package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// EDU is one ephemeral data unit (Server-Server API, "EDUs").
type EDU struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// Transaction is the body of PUT /_matrix/federation/v1/send/{txnId}.
// PDUs are the events' federation JSON, exactly as stored.
type Transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []EDU             `json:"edus,omitempty"`
}

// Sender delivers one transaction to destination. A nil error means the
// destination answered 200: the transaction was received, whatever its
// per-PDU results say, so those are never a reason to retry. Any error
// means "not accepted": the same txnID with the same contents is sent
// again later. Send must return when ctx is done.
type Sender interface {
	Send(ctx context.Context, destination, txnID string, txn *Transaction) error
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, destination, txnID string, txn *Transaction) error

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, destination, txnID string, txn *Transaction) error {
	return f(ctx, destination, txnID, txn)
}

// federationPDU returns the stored event JSON as it goes into a
// transaction. Events are stored in their federation form; the one member
// that may not belong there is "unsigned", which is not covered by hashes
// or signatures and may hold what a server added for itself (a received
// event's "age", local annotations), so it is dropped. The common case,
// an event without it, is passed through without parsing.
func federationPDU(stored []byte) (json.RawMessage, error) {
	if !bytes.Contains(stored, []byte(`"unsigned"`)) {
		return stored, nil
	}
	v, err := cjson.Parse(stored)
	if err != nil {
		return nil, fmt.Errorf("parse stored event: %w", err)
	}
	if !v.Has("unsigned") {
		return stored, nil // the string was inside some value
	}
	return cjson.Marshal(v.Without("unsigned")), nil
}
