package pdu

import (
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// benchProto is a typical text message of about 1 KiB once signed: a
// body, formatted body and a relation, with the usual graph edges.
func benchProto(v *Version) Proto {
	p := messageProto(v)
	p.Content = cjson.Obj(
		cjson.M("msgtype", cjson.Str("m.text")),
		cjson.M("body", cjson.Str(strings.Repeat("hello world ", 20))),
		cjson.M("format", cjson.Str("org.matrix.custom.html")),
		cjson.M("formatted_body", cjson.Str("<p>"+strings.Repeat("hello <b>world</b> ", 10)+"</p>")),
		cjson.M("m.relates_to", cjson.Obj(cjson.M("rel_type", cjson.Str("m.thread")), cjson.M("event_id", cjson.Str(string(fakeEventID(9)))))),
	)
	p.PrevEvents = fakeEventIDs(2)
	p.AuthEvents = fakeEventIDs(4)
	return p
}

func reportEventsPerSecond(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkParseEvent measures receiving an event: strict parse, format
// checks and the event ID (reference hash).
func BenchmarkParseEvent(b *testing.B) {
	v := MustVersion("12")
	data := mustBuild(b, v, benchProto(v), specSigner(b)).JSON()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEvent(data, v); err != nil {
			b.Fatal(err)
		}
	}
	reportEventsPerSecond(b)
}

// BenchmarkBuildEvent measures creating an event: content hash, redaction,
// ed25519 signature and the event ID.
func BenchmarkBuildEvent(b *testing.B) {
	v := MustVersion("12")
	p := benchProto(v)
	s := specSigner(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Build(v, s); err != nil {
			b.Fatal(err)
		}
	}
	reportEventsPerSecond(b)
}

// BenchmarkVerifySignatures measures the signature check of a received
// event (redaction, canonical encoding, one ed25519 verification).
func BenchmarkVerifySignatures(b *testing.B) {
	v := MustVersion("12")
	s := specSigner(b)
	e := mustBuild(b, v, benchProto(v), s)
	keys := keyring{specServer: {specKeyID: {Key: pub(s.Key), ValidUntilTS: 1 << 50}}}
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifySignatures(e, keys.find); err != nil {
			b.Fatal(err)
		}
	}
	reportEventsPerSecond(b)
}
