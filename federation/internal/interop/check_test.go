package interop

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// checker has gomatrixserverlib check the events one Plexus server
// stored. It reports findings instead of failing, so that the harness
// test can show that planted bugs are found.
type checker struct {
	w  *world
	gv gmsl.IRoomVersion
	pv *rooms.Version
	p  *plexusServer
	// plexusKeys are the Plexus servers' public keys, straight from their
	// keyrings, for the direct signature check.
	plexusKeys map[string]*plexusServer
	// counts is keyed by comparison kind, for the summary and for the
	// test's coverage assertions.
	counts   map[string]int
	findings []string
}

func newChecker(w *world, version string, p *plexusServer, servers ...*plexusServer) *checker {
	pv, _ := rooms.LookupVersion(version)
	c := &checker{w: w, gv: gmsl.MustGetRoomVersion(gmsl.RoomVersion(version)), pv: pv, p: p,
		plexusKeys: map[string]*plexusServer{}, counts: map[string]int{}}
	for _, s := range servers {
		c.plexusKeys[string(s.name)] = s
	}
	return c
}

// disagree records a finding with the event's JSON.
func (c *checker) disagree(kind string, rec *storage.EventRecord, format string, args ...any) {
	c.findings = append(c.findings, fmt.Sprintf("%s: %s: event %s\n    %s\n    json: %s",
		c.p.name, kind, rec.EventID, fmt.Sprintf(format, args...), rec.JSON))
}

// compare counts a comparison and records a finding when the two differ.
func (c *checker) compare(kind string, rec *storage.EventRecord, plexus, other string) {
	c.counts[kind]++
	if plexus != other {
		c.disagree(kind, rec, "plexus: %s\n    gomatrixserverlib: %s", plexus, other)
	}
}

// outcome is what Plexus recorded for a stored event.
func outcome(rec *storage.EventRecord, hashOK bool) string {
	switch {
	case rec.Rejected != "":
		return rejected
	case rec.SoftFailed:
		return softFailed
	case !hashOK:
		return redactedOnReceipt
	}
	return accepted
}

// checkRoom checks every event of room stored on c.p and returns Plexus's
// outcome for each.
func (c *checker) checkRoom(ctx context.Context, room rooms.RoomID) (map[string]string, error) {
	recs, err := c.p.store.EventsSince(ctx, 0, 1<<20)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, rec := range recs {
		if rec.RoomID != string(room) {
			continue
		}
		out[rec.EventID] = c.checkEvent(ctx, rec)
	}
	return out, nil
}

// checkEvent runs every comparison on one stored event and returns
// Plexus's outcome for it.
func (c *checker) checkEvent(ctx context.Context, rec *storage.EventRecord) string {
	// Parsed as a receiving server would (server-server API, "Checks
	// performed on receipt of a PDU", step 1).
	gp, err := c.gv.NewEventFromUntrustedJSON(rec.JSON)
	if err != nil {
		c.disagree("parse", rec, "gomatrixserverlib cannot parse it: %v", err)
		return ""
	}
	pe, err := rooms.ParseEvent(rec.JSON, c.pv)
	if err != nil {
		c.disagree("parse", rec, "Plexus cannot parse what it stored: %v", err)
		return ""
	}

	// Event ID: "$" + the URL-safe unpadded base64 of the reference hash
	// (rooms v4+, "Event IDs"; server-server API, "Calculating the
	// reference hash for an event").
	c.compare("event-id", rec, rec.EventID, gp.EventID())
	c.compare("event-id/parsed", rec, string(pe.ID()), gp.EventID())

	// Content hash (server-server API, "Calculating the content hash for
	// an event"), recomputed with gomatrixserverlib's canonical JSON; a
	// mismatch makes gomatrixserverlib redact the event on parse.
	hashOK, err := contentHashMatches(rec.JSON)
	if err != nil {
		c.disagree("content-hash", rec, "cannot recompute the content hash: %v", err)
	}
	c.compare("content-hash", rec, fmt.Sprint(hashOK), fmt.Sprint(!gp.Redacted()))
	c.compare("content-hash/plexus", rec, fmt.Sprint(pe.CheckContentHash()), fmt.Sprint(hashOK))

	c.checkSignatures(ctx, rec, gp)
	c.checkRedaction(ctx, rec, pe)
	c.checkAuth(ctx, rec, gp)
	return outcome(rec, hashOK)
}

// contentHashMatches recomputes an event's content hash: SHA-256 of the
// canonical JSON without signatures, unsigned and hashes.
func contentHashMatches(data []byte) (bool, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return false, err
	}
	var hashes struct {
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(obj["hashes"], &hashes); err != nil {
		return false, fmt.Errorf("hashes: %w", err)
	}
	for _, k := range []string{"signatures", "unsigned", "hashes"} {
		delete(obj, k)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return false, err
	}
	canon, err := gmsl.CanonicalJSON(raw)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(canon)
	return base64.RawStdEncoding.EncodeToString(sum[:]) == hashes.SHA256, nil
}

// checkSignatures verifies the event's signatures with gomatrixserverlib's
// KeyRing and, for events a Plexus server signed, directly against the
// public key in that server's keyring (server-server API, "Validating
// hashes and signatures on received events").
func (c *checker) checkSignatures(ctx context.Context, rec *storage.EventRecord, gp gmsl.PDU) {
	c.compare("signatures", rec, "valid", okOr(gmsl.VerifyEventSignatures(ctx, gp, c.w.verifier(), userIDForSender)))

	sender, err := spec.NewUserID(string(gp.SenderID()), true)
	if err != nil {
		c.disagree("signatures", rec, "bad sender: %v", err)
		return
	}
	p, ok := c.plexusKeys[string(sender.Domain())]
	if !ok {
		return
	}
	redacted, err := c.gv.RedactEventJSON(rec.JSON)
	if err != nil {
		c.disagree("signatures/keyring", rec, "gomatrixserverlib cannot redact it: %v", err)
		return
	}
	err = gmsl.VerifyJSON(string(p.name), gmsl.KeyID(p.keys.KeyID()), p.keys.PublicKey(), redacted)
	c.compare("signatures/keyring", rec, "valid", okOr(err))
}

// checkRedaction compares Plexus's redaction of the event with
// gomatrixserverlib's algorithm for the room version, and checks that the
// redacted event keeps its ID and its signatures (the redaction
// algorithm is what both are computed over).
func (c *checker) checkRedaction(ctx context.Context, rec *storage.EventRecord, pe *rooms.Event) {
	red, err := c.gv.RedactEventJSON(rec.JSON)
	if err != nil {
		c.disagree("redaction", rec, "gomatrixserverlib cannot redact it: %v", err)
		return
	}
	theirs, err := gmsl.CanonicalJSON(red)
	if err != nil {
		c.disagree("redaction", rec, "gomatrixserverlib's redaction is not canonical JSON: %v", err)
		return
	}
	mine := pe.Redacted()
	c.compare("redaction", rec, string(mine.JSON()), string(theirs))
	c.compare("redaction/event-id", rec, string(mine.ID()), rec.EventID)
	gr, err := c.gv.NewEventFromUntrustedJSON(mine.JSON())
	if err != nil {
		c.disagree("redaction", rec, "gomatrixserverlib cannot parse Plexus's redacted event: %v", err)
		return
	}
	c.compare("redaction/gmsl-event-id", rec, rec.EventID, gr.EventID())
	c.compare("redaction/signatures", rec, "valid", okOr(gmsl.VerifyEventSignatures(ctx, gr, c.w.verifier(), userIDForSender)))
}

// checkAuth runs gomatrixserverlib's authorisation rules against the auth
// events and the state before the event that Plexus stored, and compares
// the verdict with what Plexus recorded: accepted, rejected (steps 4 and
// 5 of "Checks performed on receipt of a PDU") or soft-failed (step 6).
// For events a Plexus server built, it also compares the auth events
// Plexus chose with gomatrixserverlib's selection ("Auth events
// selection").
func (c *checker) checkAuth(ctx context.Context, rec *storage.EventRecord, gp gmsl.PDU) {
	authEvs, err := c.gmslEvents(ctx, rec.AuthEvents)
	if err != nil {
		c.disagree("auth", rec, "auth events: %v", err)
		return
	}
	errAuth := gmsl.Allowed(gp, authEvs, userIDForSender)

	before, known, err := c.stateBefore(ctx, rec)
	if err != nil {
		c.disagree("auth", rec, "state before: %v", err)
		return
	}
	var errBefore error
	if known {
		beforeEvs, err := c.gmslState(ctx, before)
		if err != nil {
			c.disagree("auth", rec, "state before: %v", err)
			return
		}
		errBefore = gmsl.Allowed(gp, beforeEvs, userIDForSender)
		c.checkSelection(rec, gp, beforeEvs)
	} else {
		c.counts["auth/state-before-unknown"]++
	}

	plexus := "allow"
	if rec.Rejected != "" {
		plexus = "reject: " + rec.Rejected
	}
	gmslVerdict := "allow"
	switch {
	case errAuth != nil:
		gmslVerdict = "reject against its auth events: " + errAuth.Error()
	case errBefore != nil:
		gmslVerdict = "reject against the state before it: " + errBefore.Error()
	}
	c.counts["auth"]++
	if (rec.Rejected == "") != (gmslVerdict == "allow") {
		c.disagree("auth", rec, "plexus: %s\n    gomatrixserverlib: %s", plexus, gmslVerdict)
	}
	if rec.Rejected != "" {
		c.counts["auth/rejected"]++
		return
	}

	c.p.mu.Lock()
	current, remote := c.p.currentAtAdmit[rec.EventID]
	c.p.mu.Unlock()
	if !remote {
		// A local event is checked against the current state when it is
		// built, so it is never soft-failed.
		c.compare("soft-fail/local", rec, fmt.Sprint(rec.SoftFailed), "false")
		return
	}
	curEvs, err := c.gmslState(ctx, current)
	if err != nil {
		c.disagree("soft-fail", rec, "current state: %v", err)
		return
	}
	errCur := gmsl.Allowed(gp, curEvs, userIDForSender)
	c.counts["soft-fail"]++
	if rec.SoftFailed != (errCur != nil) {
		c.disagree("soft-fail", rec, "plexus soft-failed it: %v\n    gomatrixserverlib against the current state at admission: %s", rec.SoftFailed, allowOr(errCur))
	}
}

// checkSelection compares the auth events a Plexus server chose for an
// event it built with those gomatrixserverlib selects from the state
// before it.
func (c *checker) checkSelection(rec *storage.EventRecord, gp gmsl.PDU, before *gmsl.AuthEvents) {
	sender, err := spec.NewUserID(string(gp.SenderID()), true)
	if err != nil {
		return
	}
	if _, ok := c.plexusKeys[string(sender.Domain())]; !ok || rec.Type == "m.room.create" {
		return
	}
	refs, err := gmsl.StateNeededForAuth([]gmsl.PDU{gp}).AuthEventReferences(before)
	if err != nil {
		c.disagree("auth-selection", rec, "gomatrixserverlib cannot select: %v", err)
		return
	}
	mine := slices.Sorted(slices.Values(rec.AuthEvents))
	theirs := slices.Sorted(slices.Values(refs))
	c.compare("auth-selection", rec, strings.Join(mine, ","), strings.Join(theirs, ","))
}

// stateBefore returns the state Plexus holds before an event: the state
// stored with a rejected or non-state event (which does not change it),
// or the state after the single prev event of a state event. known is
// false when the checker cannot tell (an outlier, or a state event with
// several prev events, whose state before is a resolution).
func (c *checker) stateBefore(ctx context.Context, rec *storage.EventRecord) (storage.StateMap, bool, error) {
	switch {
	case rec.Outlier:
		return nil, false, nil
	case rec.Type == "m.room.create" && rec.StateKey != nil && *rec.StateKey == "":
		return storage.StateMap{}, true, nil
	case rec.Rejected != "" || rec.StateKey == nil:
		s, err := c.p.store.StateAfter(ctx, rec.EventID)
		if err == nil {
			return s, true, nil
		}
		if !errors.Is(err, storage.ErrNotFound) || rec.Rejected == "" {
			return nil, false, err
		}
	}
	if len(rec.PrevEvents) != 1 {
		return nil, false, nil
	}
	s, err := c.p.store.StateAfter(ctx, rec.PrevEvents[0])
	return s, err == nil, err
}

// gmslEvents is gomatrixserverlib's view of stored events, as an auth
// event provider.
func (c *checker) gmslEvents(ctx context.Context, ids []string) (*gmsl.AuthEvents, error) {
	recs, err := c.p.store.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	ae := gmsl.NewAuthEvents(nil)
	for _, id := range ids {
		r, ok := recs[id]
		if !ok {
			return nil, fmt.Errorf("event %s is not stored", id)
		}
		p, err := c.gv.NewEventFromUntrustedJSON(r.JSON)
		if err != nil {
			return nil, fmt.Errorf("gomatrixserverlib cannot parse %s: %w", id, err)
		}
		if err := ae.AddEvent(p); err != nil {
			return nil, err
		}
	}
	return &ae, nil
}

func (c *checker) gmslState(ctx context.Context, s storage.StateMap) (*gmsl.AuthEvents, error) {
	ids := make([]string, 0, len(s))
	for _, id := range s {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return c.gmslEvents(ctx, ids)
}

func allowOr(err error) string {
	if err == nil {
		return "allow"
	}
	return "reject: " + err.Error()
}

func okOr(err error) string {
	if err == nil {
		return "valid"
	}
	return "invalid: " + err.Error()
}
