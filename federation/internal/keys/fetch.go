package keys

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/internal/storage"
)

// serverKeys is a verified key response ("Server Keys" definition).
type serverKeys struct {
	// obj is the response with only its server's own signatures, as
	// stored and served again as a notary.
	obj        cjson.Value
	serverName string
	validUntil int64
	verify     map[string]ed25519.PublicKey
	old        map[string]oldKey
}

type oldKey struct {
	key       ed25519.PublicKey
	expiredTS int64
}

func decodeKey(v cjson.Value) (ed25519.PublicKey, error) {
	s, ok := v.GetStr("key")
	if !ok {
		return nil, errors.New("no key")
	}
	b, err := signing.DecodeBase64(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q is not an unpadded base64 ed25519 key", s)
	}
	return ed25519.PublicKey(b), nil
}

// parseServerKeys checks a key response for server: its server_name, its
// keys, and its self-signature. The response must be signed by at least
// one of its verify_keys, and every signature it carries by one of them
// must verify ("signatures: Digital signatures for this object signed
// using the verify_keys"). Keys of algorithms other than ed25519 are
// skipped.
func parseServerKeys(obj cjson.Value, server string) (*serverKeys, error) {
	if obj.Kind() != cjson.Object {
		return nil, errors.New("key response is not an object")
	}
	name, _ := obj.GetStr("server_name")
	if name != server {
		return nil, fmt.Errorf("key response is for %q, not %q", name, server)
	}
	validUntil, ok := obj.GetInt("valid_until_ts")
	if !ok {
		return nil, errors.New("key response has no valid_until_ts")
	}
	sk := &serverKeys{serverName: server, validUntil: validUntil, verify: map[string]ed25519.PublicKey{}, old: map[string]oldKey{}}
	vks, _ := obj.Get("verify_keys")
	for _, m := range vks.Members() {
		if !strings.HasPrefix(m.Key, signing.AlgEd25519+":") {
			continue
		}
		key, err := decodeKey(m.Value)
		if err != nil {
			return nil, fmt.Errorf("verify_keys %s: %w", m.Key, err)
		}
		sk.verify[m.Key] = key
	}
	if len(sk.verify) == 0 {
		return nil, errors.New("key response has no ed25519 verify_keys")
	}
	olds, _ := obj.Get("old_verify_keys")
	for _, m := range olds.Members() {
		if !strings.HasPrefix(m.Key, signing.AlgEd25519+":") {
			continue
		}
		key, err := decodeKey(m.Value)
		if err != nil {
			return nil, fmt.Errorf("old_verify_keys %s: %w", m.Key, err)
		}
		exp, ok := m.Value.GetInt("expired_ts")
		if !ok {
			return nil, fmt.Errorf("old_verify_keys %s has no expired_ts", m.Key)
		}
		if _, dup := sk.verify[m.Key]; !dup {
			sk.old[m.Key] = oldKey{key: key, expiredTS: exp}
		}
	}
	signed := 0
	for id, key := range sk.verify {
		if _, ok := signing.Signature(obj, server, id); !ok {
			continue
		}
		if err := signing.Verify(obj, server, id, key); err != nil {
			return nil, fmt.Errorf("key response self-signature: %w", err)
		}
		signed++
	}
	if signed == 0 {
		return nil, errors.New("key response is not signed by any of its verify_keys")
	}
	own, _ := obj.Path("signatures", server)
	sk.obj = obj.With("signatures", cjson.Obj(cjson.M(server, own)))
	return sk, nil
}

// fetchDirect fetches GET /_matrix/key/v2/server from server and stores
// the keys.
func (k *Keys) fetchDirect(ctx context.Context, server string) error {
	var raw json.RawMessage
	if err := k.client.GetUnsigned(ctx, server, "/_matrix/key/v2/server", &raw); err != nil {
		return err
	}
	obj, err := cjson.Parse(raw)
	if err != nil {
		return fmt.Errorf("key response: %w", err)
	}
	sk, err := parseServerKeys(obj, server)
	if err != nil {
		return err
	}
	return k.store(ctx, sk)
}

// fetchFromNotary asks notary for server's keys (POST
// /_matrix/key/v2/query) and stores every response for server that
// carries both a valid notary signature and a valid self-signature.
func (k *Keys) fetchFromNotary(ctx context.Context, notary, server, keyID string, ts int64) error {
	req := map[string]any{"server_keys": map[string]any{
		server: map[string]any{keyID: map[string]any{"minimum_valid_until_ts": ts}},
	}}
	var raw json.RawMessage
	if err := k.client.Do(ctx, notary, "POST", "/_matrix/key/v2/query", req, &raw); err != nil {
		return err
	}
	resp, err := cjson.Parse(raw)
	if err != nil {
		return fmt.Errorf("notary response: %w", err)
	}
	list, ok := resp.Get("server_keys")
	if !ok || list.Kind() != cjson.Array {
		return errors.New("notary response has no server_keys array")
	}
	stored := 0
	var errs []error
	for _, obj := range list.Array() {
		if name, _ := obj.GetStr("server_name"); name != server {
			continue // "may return multiple keys": but only the ones we asked for are trusted here
		}
		if err := k.checkNotarySignature(ctx, obj, notary); err != nil {
			errs = append(errs, err)
			continue
		}
		sk, err := parseServerKeys(obj, server)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := k.store(ctx, sk); err != nil {
			return err
		}
		stored++
	}
	if stored == 0 {
		return fmt.Errorf("no usable response for %s: %w", server, errors.Join(errs...))
	}
	return nil
}

// checkNotarySignature requires at least one signature of notary on obj
// by a key of the notary's we can get from the notary itself, and every
// such signature to verify.
func (k *Keys) checkNotarySignature(ctx context.Context, obj cjson.Value, notary string) error {
	now := k.nowMS()
	verified := 0
	for _, id := range signing.KeyIDs(obj, notary) {
		rec, ok := k.get(ctx, notary, id, now, true)
		if !ok || !rec.validAt(now) {
			continue
		}
		if err := signing.Verify(obj, notary, id, rec.key); err != nil {
			return fmt.Errorf("notary %s signature: %w", notary, err)
		}
		verified++
	}
	if verified == 0 {
		return fmt.Errorf("no verifiable signature of notary %s", notary)
	}
	return nil
}

// store writes the keys of a response and refreshes the memory copy of
// the server's keys. A row is replaced only by a response at least as
// fresh (by valid_until_ts), so a notary's stale copy never undoes a key
// rotation we already saw.
func (k *Keys) store(ctx context.Context, sk *serverKeys) error {
	fetched := k.nowMS()
	body := cjson.Marshal(sk.obj)
	err := k.db.Update(ctx, func(tx *storage.Tx) error {
		put := func(id string, key ed25519.PublicKey, expired any) error {
			_, err := tx.Exec(ctx, `INSERT INTO server_keys
				(server_name, key_id, verify_key, valid_until_ts, expired_ts, key_json, fetched_ts)
				VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (server_name, key_id) DO UPDATE SET
					verify_key = excluded.verify_key, valid_until_ts = excluded.valid_until_ts,
					expired_ts = excluded.expired_ts, key_json = excluded.key_json, fetched_ts = excluded.fetched_ts
				WHERE excluded.valid_until_ts >= server_keys.valid_until_ts`,
				sk.serverName, id, []byte(key), sk.validUntil, expired, body, fetched)
			return err
		}
		for id, key := range sk.verify {
			if err := put(id, key, nil); err != nil {
				return err
			}
		}
		for id, o := range sk.old {
			if err := put(id, o.key, o.expiredTS); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keys: storing keys of %s: %w", sk.serverName, err)
	}
	ks, err := k.load(ctx, sk.serverName)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.servers[sk.serverName] = ks
	k.mu.Unlock()
	return nil
}

// load reads a server's keys from the database.
func (k *Keys) load(ctx context.Context, server string) (map[string]keyRecord, error) {
	ks := map[string]keyRecord{}
	err := k.db.View(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, `SELECT key_id, verify_key, valid_until_ts, expired_ts, fetched_ts
			FROM server_keys WHERE server_name = ?`, server)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id                string
				key               []byte
				validUntil, fetch int64
				expired           sql.NullInt64
			)
			if err := rows.Scan(&id, &key, &validUntil, &expired, &fetch); err != nil {
				return err
			}
			if len(key) != ed25519.PublicKeySize {
				continue
			}
			rec := keyRecord{key: ed25519.PublicKey(key)}
			if expired.Valid {
				rec.old, rec.validUntil = true, expired.Int64-1
			} else {
				rec.validUntil = min(validUntil, fetch+MaxValidity.Milliseconds())
			}
			ks[id] = rec
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("keys: reading keys of %s: %w", server, err)
	}
	return ks, nil
}

// storedResponses returns the distinct stored responses for server.
func (k *Keys) storedResponses(ctx context.Context, server string) ([]cjson.Value, error) {
	var out []cjson.Value
	err := k.db.View(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, `SELECT DISTINCT key_json FROM server_keys WHERE server_name = ?`, server)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return err
			}
			v, err := cjson.Parse(b)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("keys: reading responses of %s: %w", server, err)
	}
	return out, nil
}
