package difftest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// baseTS is the origin_server_ts of the first event of every graph: a fixed
// time in the past, so gomatrixserverlib's "lesser of valid_until_ts and
// seven days from now" rule (rooms v5, "Signing key validity period")
// never bites on the current keys.
const baseTS = 1_700_000_000_000

// keyValidUntil is the valid_until_ts published for every current key.
const keyValidUntil = baseTS + 10*365*24*3600*1000

// server is one homeserver of a generated world, with its signing key and
// an expired old key.
type server struct {
	name   pdu.ServerName
	keyID  string
	priv   ed25519.PrivateKey
	oldKey string // key ID of a key that expired at baseTS
	oldPri ed25519.PrivateKey
}

func (s *server) signer() pdu.Signer {
	return pdu.Signer{Server: s.name, KeyID: s.keyID, Key: s.priv}
}

func newServer(rng *rand.Rand, name string) *server {
	return &server{
		name:   pdu.ServerName(name),
		keyID:  fmt.Sprintf("ed25519:k%d", rng.IntN(1000)),
		priv:   ed25519.NewKeyFromSeed(seedBytes(rng)),
		oldKey: fmt.Sprintf("ed25519:old%d", rng.IntN(1000)),
		oldPri: ed25519.NewKeyFromSeed(seedBytes(rng)),
	}
}

func seedBytes(rng *rand.Rand) []byte {
	b := make([]byte, ed25519.SeedSize)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// keyRing knows every server's keys. It is both Plexus's KeyFinder and a
// gomatrixserverlib KeyDatabase, so the two verifiers see the same keys
// with the same validity.
type keyRing struct {
	servers map[pdu.ServerName]*server
}

func newKeyRing(servers []*server) *keyRing {
	k := &keyRing{servers: map[pdu.ServerName]*server{}}
	for _, s := range servers {
		k.servers[s.name] = s
	}
	return k
}

// find implements pdu.KeyFinder.
func (k *keyRing) find(name pdu.ServerName, keyID string) (pdu.VerifyKey, bool) {
	s, ok := k.servers[name]
	if !ok {
		return pdu.VerifyKey{}, false
	}
	switch keyID {
	case s.keyID:
		return pdu.VerifyKey{Key: s.priv.Public().(ed25519.PublicKey), ValidUntilTS: keyValidUntil}, true
	case s.oldKey:
		return pdu.VerifyKey{Key: s.oldPri.Public().(ed25519.PublicKey), ValidUntilTS: baseTS - 1}, true
	}
	return pdu.VerifyKey{}, false
}

// FetchKeys implements gmsl.KeyFetcher over the same keys as find.
func (k *keyRing) FetchKeys(_ context.Context, reqs map[gmsl.PublicKeyLookupRequest]spec.Timestamp) (map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult, error) {
	out := map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult{}
	for req := range reqs {
		s, ok := k.servers[pdu.ServerName(req.ServerName)]
		if !ok {
			continue
		}
		switch string(req.KeyID) {
		case s.keyID:
			out[req] = gmsl.PublicKeyLookupResult{
				VerifyKey:    gmsl.VerifyKey{Key: spec.Base64Bytes(s.priv.Public().(ed25519.PublicKey))},
				ExpiredTS:    gmsl.PublicKeyNotExpired,
				ValidUntilTS: keyValidUntil,
			}
		case s.oldKey:
			out[req] = gmsl.PublicKeyLookupResult{
				VerifyKey:    gmsl.VerifyKey{Key: spec.Base64Bytes(s.oldPri.Public().(ed25519.PublicKey))},
				ExpiredTS:    baseTS - 1,
				ValidUntilTS: gmsl.PublicKeyNotValid,
			}
		}
	}
	return out, nil
}

// FetcherName implements gmsl.KeyFetcher.
func (k *keyRing) FetcherName() string { return "difftest" }

// StoreKeys implements gmsl.KeyDatabase; the keys are fixed.
func (k *keyRing) StoreKeys(context.Context, map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult) error {
	return nil
}

// verifier is gomatrixserverlib's own KeyRing over our key database.
func (k *keyRing) verifier() gmsl.JSONVerifier {
	return gmsl.KeyRing{KeyDatabase: k}
}

// userIDForSender maps a sender to a user ID the way every room version
// before pseudo IDs does: they are the same string.
func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}
