package difftest

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// checkEvent compares everything about one event that does not depend on
// the room's state: event ID and reference hash, content hash, redaction,
// signing and signature checks, and the same for a twin of the event
// built by gomatrixserverlib.
func (c *checker) checkEvent(g *graph, e *pdu.Event) {
	gp := c.gp(e)
	if gp == nil {
		return
	}
	c.check("event-id", e, string(e.ID()), gp.EventID())
	ref := pdu.ReferenceHash(g.v, e.Object())
	c.check("reference-hash", e, base64.RawURLEncoding.EncodeToString(ref[:]), gp.EventID()[1:])
	// A content hash mismatch makes gomatrixserverlib redact the event on
	// parse; Plexus's CheckContentHash must agree that it matches.
	c.check("content-hash", e, fmt.Sprint(e.CheckContentHash()), fmt.Sprint(!gp.Redacted()))

	c.checkRedaction(g, e, e.Object(), "redaction")
	perr := pdu.VerifySignatures(e, g.keys.find)
	gerr := gmsl.VerifyEventSignatures(context.Background(), gp, g.keys.verifier(), userIDForSender)
	c.compareSignatures("signatures", e, perr, gerr)
	// Every generated event is validly hashed and signed by everyone
	// who must sign it.
	c.checkSpec("signatures", e, okOrNot(perr), "valid")
	c.checkSpec("content-hash", e, fmt.Sprint(e.CheckContentHash()), "true")

	// The costlier checks run on a random share of the events, so the
	// whole test stays within its time budget under -race.
	if c.rng.IntN(3) == 0 {
		c.checkRedactedEvent(g, e)
		c.checkSigning(g, e)
		c.checkTwin(g, e)
	}
	if c.rng.IntN(4) == 0 {
		c.checkSignatureVariants(g, e)
	}
	if c.rng.IntN(3) == 0 {
		c.checkRedaction(g, e, c.junk(g, e.Object()), "redaction/junk-keys")
	}
}

// checkRedaction compares pdu.Redact with gomatrixserverlib's redaction
// algorithm on an event object, by canonical bytes.
func (c *checker) checkRedaction(g *graph, e *pdu.Event, obj cjson.Value, kind string) {
	raw := cjson.Marshal(obj)
	mine := string(cjson.Marshal(pdu.Redact(g.v, obj)))
	red, err := c.gv.RedactEventJSON(raw)
	if err != nil {
		c.check(kind, e, mine, "error: "+err.Error())
		return
	}
	theirs, err := cjson.Canonicalize(red)
	if err != nil {
		c.check(kind, e, mine, "non-canonicalisable output: "+err.Error())
		return
	}
	if mine != string(theirs) {
		if name, ok := redactionException(g.v, obj, mine, theirs); ok {
			c.compared(kind)
			c.excused(name)
			return
		}
	}
	c.check(kind, e, mine, string(theirs))
}

// checkRedactedEvent compares the redacted events themselves: Plexus's
// Event.Redacted and gomatrixserverlib's PDU.Redact, which must keep the
// event ID.
func (c *checker) checkRedactedEvent(g *graph, e *pdu.Event) {
	gp, err := c.gv.NewEventFromUntrustedJSON(e.JSON())
	if err != nil {
		return // reported by gp
	}
	gp.Redact()
	r := e.Redacted()
	theirs, _ := cjson.Canonicalize(gp.JSON())
	c.check("redacted-event", e, string(r.JSON()), string(theirs))
	c.check("redacted-event-id", e, string(r.ID()), gp.EventID())
}

// checkSigning has gomatrixserverlib sign exactly the object Plexus
// signed, with the same key. ed25519 is deterministic, so the signatures
// must be identical.
func (c *checker) checkSigning(g *graph, e *pdu.Event) {
	srv := g.server(e.Sender().Domain())
	unsigned := e.Object().Without("signatures")
	gp, err := c.gv.NewEventFromTrustedJSON(cjson.Marshal(unsigned), false)
	if err != nil {
		c.check("signing", e, "ok", "error: "+err.Error())
		return
	}
	signed := gp.Sign(string(srv.name), gmsl.KeyID(srv.keyID), srv.priv)
	theirs, err := cjson.Parse(signed.JSON())
	if err != nil {
		c.check("signing", e, "ok", "error: "+err.Error())
		return
	}
	mine, _ := e.Object().Path("signatures", string(srv.name), srv.keyID)
	sig, _ := theirs.Path("signatures", string(srv.name), srv.keyID)
	c.check("signing", e, mine.String(), sig.String())
}

// checkTwin builds the same event with gomatrixserverlib's EventBuilder
// (which adds the legacy "origin" and, for state events, "prev_state"
// keys) and checks that Plexus parses it to the same event ID, finds its
// content hash valid and its signature good.
func (c *checker) checkTwin(g *graph, e *pdu.Event) {
	srv := g.server(e.Sender().Domain())
	pe := gmsl.ProtoEvent{
		SenderID:   string(e.Sender()),
		RoomID:     string(e.RoomID()),
		Type:       e.Type(),
		StateKey:   e.StateKey(),
		PrevEvents: idStrings(e.PrevEvents()),
		AuthEvents: idStrings(e.AuthEvents()),
		Depth:      e.Depth(),
		Content:    cjson.Marshal(e.Content()),
	}
	if !g.v.RedactsInContent && e.Redacts() != "" {
		pe.Redacts = string(e.Redacts())
	}
	twin, err := c.gv.NewEventBuilderFromProtoEvent(&pe).Build(time.UnixMilli(e.OriginServerTS()), spec.ServerName(srv.name), gmsl.KeyID(srv.keyID), srv.priv)
	if err != nil {
		c.check("twin", e, "built", "error: "+err.Error())
		return
	}
	pt, err := pdu.ParseEvent(twin.JSON(), g.v)
	if err != nil {
		c.check("twin", e, "error: "+err.Error(), "valid event "+string(twin.JSON()))
		return
	}
	c.check("twin/event-id", pt, string(pt.ID()), twin.EventID())
	hashes, _ := cjson.Parse(twin.JSON())
	want, _ := hashes.Path("hashes", "sha256")
	got := pdu.ContentHash(pt.Object())
	c.check("twin/content-hash", pt, base64.RawStdEncoding.EncodeToString(got[:]), mustStr(want))
	c.check("twin/content-hash-valid", pt, fmt.Sprint(pt.CheckContentHash()), "true")
	// Only the sender's server signed the twin: no co-signatures.
	perr := pdu.VerifySignatures(pt, g.keys.find)
	gerr := gmsl.VerifyEventSignatures(context.Background(), twin, g.keys.verifier(), userIDForSender)
	c.compareSignatures("twin/signatures", pt, perr, gerr)
	c.checkRedaction(g, pt, pt.Object(), "twin/redaction")
}

func mustStr(v cjson.Value) string {
	s, _ := v.Str()
	return s
}

func idStrings(ids []pdu.EventID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

// sigVariant is a way of (mis)signing an event, applied to a copy.
type sigVariant struct {
	name  string
	apply func(g *graph, e *pdu.Event) (cjson.Value, bool)
	// valid is the spec's verdict on the variant's signatures (server
	// API, "Validating hashes and signatures on received events") and
	// hashOK on its content hash, checked on Plexus's side whatever
	// gomatrixserverlib says.
	valid  func(e *pdu.Event) bool
	hashOK bool
}

func always(v bool) func(*pdu.Event) bool { return func(*pdu.Event) bool { return v } }

var sigVariants = []sigVariant{
	{name: "tampered-signed-field", valid: always(false), hashOK: false, apply: func(g *graph, e *pdu.Event) (cjson.Value, bool) {
		// origin_server_ts survives redaction, so the signature covers it.
		return e.Object().With("origin_server_ts", cjson.Integer(e.OriginServerTS()+1)), true
	}},
	{name: "tampered-unsigned-content", valid: always(true), hashOK: false, apply: func(g *graph, e *pdu.Event) (cjson.Value, bool) {
		// A content key that redaction strips: the signature still holds,
		// the content hash does not.
		if e.Type() == pdu.TypeCreate && g.v.Redaction == pdu.RedactV11 {
			return cjson.Value{}, false
		}
		return e.Object().With("content", e.Content().With("org.example.extra", cjson.Integer(1))), true
	}},
	{name: "expired-key-only", valid: always(false), hashOK: true, apply: func(g *graph, e *pdu.Event) (cjson.Value, bool) {
		s := g.server(e.Sender().Domain())
		return signOnly(g.v, e, s.name, s.oldKey, s.oldPri)
	}},
	{name: "unknown-key-only", valid: always(false), hashOK: true, apply: func(g *graph, e *pdu.Event) (cjson.Value, bool) {
		s := g.server(e.Sender().Domain())
		return signOnly(g.v, e, s.name, "ed25519:unknown", ed25519.NewKeyFromSeed(make([]byte, 32)))
	}},
	{name: "wrong-key-bytes", valid: always(false), hashOK: true, apply: func(g *graph, e *pdu.Event) (cjson.Value, bool) {
		s := g.server(e.Sender().Domain())
		return signOnly(g.v, e, s.name, s.keyID, ed25519.NewKeyFromSeed(make([]byte, 32)))
	}},
	{name: "extra-foreign-signature", valid: always(true), hashOK: true, apply: func(g *graph, e *pdu.Event) (cjson.Value, bool) {
		obj, err := pdu.SignEvent(g.v, e.Object(), "elsewhere.example", "ed25519:x", ed25519.NewKeyFromSeed(make([]byte, 32)))
		return obj, err == nil
	}},
	{name: "missing-co-signature", valid: func(e *pdu.Event) bool { return e.Membership() == "invite" }, hashOK: true, apply: func(g *graph, e *pdu.Event) (cjson.Value, bool) {
		co := coSigners(e)
		if len(co) == 0 {
			return cjson.Value{}, false
		}
		sigs, _ := e.Object().Get("signatures")
		return e.Object().With("signatures", sigs.Without(string(co[0]))), true
	}},
}

// signOnly replaces all signatures by one made with the given key.
func signOnly(v *pdu.Version, e *pdu.Event, server pdu.ServerName, keyID string, priv ed25519.PrivateKey) (cjson.Value, bool) {
	obj, err := pdu.SignEvent(v, e.Object().Without("signatures"), server, keyID, priv)
	return obj, err == nil
}

// checkSignatureVariants tries a random way of getting the signatures
// wrong (or harmlessly different) and compares the verdicts of the two
// verifiers, and of the two content hash checks.
func (c *checker) checkSignatureVariants(g *graph, e *pdu.Event) {
	var (
		sv  sigVariant
		obj cjson.Value
		ok  bool
	)
	// Variants that do not apply to e (no co-signature to drop) are
	// skipped; missing-co-signature is tried first when it does apply,
	// as co-signed events are few.
	if len(coSigners(e)) > 0 && c.rng.IntN(2) == 0 {
		sv = sigVariants[len(sigVariants)-1]
		obj, ok = sv.apply(g, e)
	}
	for tries := 0; !ok && tries < 3; tries++ {
		sv = sigVariants[c.rng.IntN(len(sigVariants))]
		obj, ok = sv.apply(g, e)
	}
	if !ok {
		return
	}
	kind := "signatures/" + sv.name
	pe, err := pdu.NewEvent(obj, g.v)
	if err != nil {
		c.fail(kind, e, "error: "+err.Error(), "(not tried)")
		return
	}
	gp, err := c.gv.NewEventFromUntrustedJSON(pe.JSON())
	if err != nil {
		c.fail(kind, pe, "parsed", "error: "+err.Error())
		return
	}
	c.check(kind+"/content-hash", pe, fmt.Sprint(pe.CheckContentHash()), fmt.Sprint(!gp.Redacted()))
	perr := pdu.VerifySignatures(pe, g.keys.find)
	gerr := gmsl.VerifyEventSignatures(context.Background(), gp, g.keys.verifier(), userIDForSender)
	c.compareSignatures(kind, pe, perr, gerr)
	// And against the spec's verdict, so that a mistake both share
	// cannot pass.
	c.checkSpec(kind+"/content-hash", pe, fmt.Sprint(pe.CheckContentHash()), fmt.Sprint(sv.hashOK))
	c.checkSpec(kind, pe, okOrNot(perr), okOrNot(errIf(!sv.valid(e))))
}

func errIf(b bool) error {
	if b {
		return errors.New("invalid")
	}
	return nil
}

// compareSignatures compares two signature verdicts: valid or not (the
// reasons are worded differently).
func (c *checker) compareSignatures(kind string, e *pdu.Event, perr, gerr error) {
	if (perr == nil) != (gerr == nil) {
		if name, ok := signatureException(e, perr, gerr); ok {
			c.compared(kind)
			c.excused(name)
			return
		}
	}
	if !c.check(kind, e, okOrNot(perr), okOrNot(gerr)) {
		c.t.Logf("seed %d: %s: plexus: %v; gomatrixserverlib: %v", c.seed, kind, perr, gerr)
	}
}

func okOrNot(err error) string {
	if err == nil {
		return "valid"
	}
	return "invalid"
}

// junkKeys are keys that redaction algorithms treat specially somewhere,
// plus keys no algorithm keeps.
var (
	junkTop     = []string{"origin", "membership", "prev_state", "unsigned", "outlier", "org.example.junk", "redacts"}
	junkContent = []string{"org.example.junk", "creator", "room_version", "m.federate", "predecessor", "type",
		"membership", "join_authorised_via_users_server", "displayname", "third_party_invite",
		"join_rule", "allow", "ban", "events", "events_default", "kick", "redact", "state_default",
		"users", "users_default", "invite", "notifications", "history_visibility", "redacts", "aliases"}
)

// junk adds random keys, with random values, to an event object and its
// content.
func (c *checker) junk(g *graph, obj cjson.Value) cjson.Value {
	for i, n := 0, 1+c.rng.IntN(3); i < n; i++ {
		obj = obj.With(junkTop[c.rng.IntN(len(junkTop))], randomJSON(c.rng, 2))
	}
	content, _ := obj.Get("content")
	for i, n := 0, 1+c.rng.IntN(4); i < n; i++ {
		k := junkContent[c.rng.IntN(len(junkContent))]
		val := randomJSON(c.rng, 3)
		if k == "third_party_invite" && c.rng.IntN(2) == 0 {
			val = cjson.Obj(
				cjson.M("display_name", cjson.Str("alice")),
				cjson.M("signed", cjson.Obj(cjson.M("mxid", cjson.Str("@a:b.example")), cjson.M("token", cjson.Str("tok")))),
			)
		}
		content = content.With(k, val)
	}
	return obj.With("content", content)
}
