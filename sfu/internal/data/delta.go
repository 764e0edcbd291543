//lint:file-ignore SA1019 LiveKit clients still read and write the deprecated DataPacket.kind and UserPacket sender and destination fields, so the relay keeps them in step with the new ones.

package data

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// change is one key's latest world change waiting for a recipient.
type change struct {
	value   json.RawMessage // canonical JSON, shared and never modified; nil for a delete
	ts      int64
	by      string
	deleted bool
	at      time.Duration // arrival, on the monotonic clock (mono)
	size    int           // changeSize of the entry under its key
}

// keyed is a change with its key, as a message's changes go to every
// recipient.
type keyed struct {
	key string
	change
}

// changesOf lists m's changes from identity by, each sized once for all
// the recipients it goes to.
func changesOf(m *worldMsg, by string, at time.Duration) []keyed {
	out := make([]keyed, 0, len(m.set)+len(m.del))
	for k, v := range m.set {
		out = append(out, keyed{k, change{value: v, ts: m.tsFor(k), by: by, at: at}})
	}
	for _, k := range m.del {
		out = append(out, keyed{k, change{ts: m.tsFor(k), by: by, deleted: true, at: at}})
	}
	for i := range out {
		out[i].size = changeSize(out[i].key, &out[i].change)
	}
	return out
}

// epoch anchors mono.
var epoch = time.Now()

// mono is the monotonic time since epoch: cheap, and immune to wall
// clock steps, for measuring the time a change spends in the relay.
func mono() time.Duration { return time.Since(epoch) }

// newer reports whether c replaces cur: the rule of state.wins (doc.go,
// "World messages"), so a pending delta ends with what the room's state
// holds whatever order concurrent Receive calls queued the changes in.
func (c *change) newer(cur *change) bool {
	if c.ts != cur.ts {
		return c.ts > cur.ts
	}
	return c.by >= cur.by
}

// pending is the world changes waiting for one recipient on one channel,
// at most one per key.
type pending map[string]change

// put merges c under key k last-writer-wins; it reports whether c
// replaced a pending change (the recipient will never see that one).
func (d pending) put(k string, c change) (replaced, kept bool) {
	cur, ok := d[k]
	if ok && !c.newer(&cur) {
		return false, false
	}
	d[k] = c
	return ok, true
}

// deltaEncoder turns a recipient's pending changes into delta packets.
// It belongs to the recipient's writer goroutine: its buffers are reused
// from one batch to the next, so a steady stream of deltas allocates
// nothing but what the Sender keeps.
type deltaEncoder struct {
	topic  string
	budget int // payload bytes per packet
	keys   []string
	entry  []byte
	body   []byte
	pkt    []byte
	user   livekit.UserPacket
	dp     livekit.DataPacket
}

// deltaEnvelope bounds the protobuf bytes around a delta payload and
// its topic: the DataPacket's kind and user fields and the UserPacket's
// payload and topic tags and lengths (varints of at most 3 bytes below
// 2 MiB).
const deltaEnvelope = 2 + 4 + 4 + 4

func newDeltaEncoder(topic string, maxPacket int) *deltaEncoder {
	e := &deltaEncoder{topic: topic, budget: max(maxPacket-deltaEnvelope-len(topic), 64)}
	e.user.Topic = &e.topic
	e.dp.Value = &livekit.DataPacket_User{User: &e.user}
	return e
}

const (
	deltaHead = `{"entries":{`
	deltaTail = `},"v":1}`
)

// encode writes d's changes as delta packets (doc.go, "Deltas"), keys
// in code point order, each packet within the budget (an entry too large
// for one alone goes alone), and calls send with each packet's bytes and
// its number of entries. With fresh set the bytes are a new allocation
// the callee may keep; otherwise they are valid only during the call.
// It stops at send's first error and returns it.
func (e *deltaEncoder) encode(kind Kind, d pending, fresh bool, send func(b []byte, n int) error) error {
	e.keys = e.keys[:0]
	for k := range d {
		e.keys = append(e.keys, k)
	}
	slices.Sort(e.keys)
	e.body = append(e.body[:0], deltaHead...)
	n := 0
	for _, k := range e.keys {
		c := d[k]
		e.entry = appendChange(e.entry[:0], k, &c)
		if n > 0 && len(e.body)+1+len(e.entry)+len(deltaTail) > e.budget {
			if err := e.flush(kind, n, fresh, send); err != nil {
				return err
			}
			e.body, n = append(e.body[:0], deltaHead...), 0
		}
		if n > 0 {
			e.body = append(e.body, ',')
		}
		e.body = append(e.body, e.entry...)
		n++
	}
	if n == 0 {
		return nil
	}
	return e.flush(kind, n, fresh, send)
}

func (e *deltaEncoder) flush(kind Kind, n int, fresh bool, send func([]byte, int) error) error {
	e.body = append(e.body, deltaTail...)
	e.dp.Kind = livekitKind(kind)
	e.user.Payload = e.body
	dst := e.pkt[:0]
	if fresh {
		dst = make([]byte, 0, len(e.body)+deltaEnvelope+len(e.topic))
	}
	b, err := proto.MarshalOptions{}.MarshalAppend(dst, &e.dp)
	e.user.Payload = nil
	if err != nil {
		return err
	}
	if !fresh {
		e.pkt = b
	}
	return send(b, n)
}

// changeSize is the length appendChange gives the entry, and its
// separating comma: a set is a snapshot entry, a delete has "deleted"
// instead of the value.
func changeSize(k string, c *change) int {
	if c.deleted {
		return entrySize(k, nil, c.ts, c.by) - len(`,"value":`) + len(`,"deleted":true`) + 1
	}
	return entrySize(k, c.value, c.ts, c.by) + 1
}

// appendChange appends one delta entry as canonical JSON (members in
// code point order, as in the snapshot):
//
//	"<key>":{"by":"<identity>","ts":<ms>,"value":<json>}
//	"<key>":{"by":"<identity>","deleted":true,"ts":<ms>}
func appendChange(b []byte, k string, c *change) []byte {
	b = cjson.AppendString(b, k)
	b = append(b, `:{"by":`...)
	b = cjson.AppendString(b, c.by)
	if c.deleted {
		b = append(b, `,"deleted":true,"ts":`...)
		b = strconv.AppendInt(b, c.ts, 10)
		return append(b, '}')
	}
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, c.ts, 10)
	b = append(b, `,"value":`...)
	b = append(b, c.value...)
	return append(b, '}')
}
