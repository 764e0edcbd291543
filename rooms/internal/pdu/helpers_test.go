package pdu

import (
	"crypto/ed25519"
	"crypto/sha256"
	"strconv"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
)

// The key of appendices, "Cryptographic Test Vectors", "Signing Key".
const (
	specSeed              = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	specServer ServerName = "domain"
	specKeyID             = "ed25519:1"
)

func specKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	seed, err := signing.DecodeBase64(specSeed)
	if err != nil {
		t.Fatalf("decode spec seed: %v", err)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func specSigner(t testing.TB) Signer {
	return Signer{Server: specServer, KeyID: specKeyID, Key: specKey(t)}
}

// seededKey is a deterministic key other than the spec's.
func seededKey(b byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = b
	}
	return ed25519.NewKeyFromSeed(seed)
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// keyring is a KeyFinder over a fixed table.
type keyring map[ServerName]map[string]VerifyKey

func (k keyring) find(server ServerName, keyID string) (VerifyKey, bool) {
	key, ok := k[server][keyID]
	return key, ok
}

func mustJSON(t testing.TB, s string) cjson.Value {
	t.Helper()
	v, err := cjson.Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return v
}

// fakeEventID is a well-formed event ID that names no real event.
func fakeEventID(n int) EventID {
	h := sha256.Sum256([]byte("event " + strconv.Itoa(n)))
	return EventID("$" + signing.URLBase64.EncodeToString(h[:]))
}

func fakeEventIDs(n int) []EventID {
	ids := make([]EventID, n)
	for i := range ids {
		ids[i] = fakeEventID(i)
	}
	return ids
}

// testRoomID returns a room ID of the form room version v wants.
func testRoomID(v *Version) RoomID {
	if v.RoomIDIsCreateHash {
		h := sha256.Sum256([]byte("create event"))
		return RoomID("!" + signing.URLBase64.EncodeToString(h[:]))
	}
	return "!room:domain"
}

func strPtr(s string) *string { return &s }

// messageProto is an ordinary m.room.message in room version v.
func messageProto(v *Version) Proto {
	return Proto{
		Type:           "m.room.message",
		Sender:         "@alice:domain",
		RoomID:         testRoomID(v),
		Content:        cjson.Obj(cjson.M("body", cjson.Str("hello")), cjson.M("msgtype", cjson.Str("m.text"))),
		PrevEvents:     fakeEventIDs(1),
		AuthEvents:     fakeEventIDs(3),
		Depth:          7,
		OriginServerTS: 1_700_000_000_000,
	}
}

func mustBuild(t testing.TB, v *Version, p Proto, s Signer) *Event {
	t.Helper()
	e, err := p.Build(v, s)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return e
}

// versions lists every supported room version, for tests that hold for
// all of them.
func versions() []*Version {
	var vs []*Version
	for _, id := range SupportedVersions() {
		vs = append(vs, MustVersion(id))
	}
	return vs
}
