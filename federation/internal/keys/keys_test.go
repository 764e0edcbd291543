package keys

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/rooms"
)

var ctx = context.Background()

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// TestDirectFetchAndCache: a key is fetched from its server once, then
// served from memory, then (after a restart) from the database.
func TestDirectFetchAndCache(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend)
		o := w.fakeOrigin("origin")
		v := w.listen("verifier")
		w.start(v, nil)
		o.standard(t, w.clock.now(), time.Hour)

		got, err := v.keys.VerifyKey(ctx, "origin", o.keyID, 0)
		if err != nil || !got.Equal(pubOf(o.key)) {
			t.Fatalf("VerifyKey = %x, %v", got, err)
		}
		if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, 0); err != nil {
			t.Fatal(err)
		}
		if n := o.requests.Load(); n != 1 {
			t.Errorf("%d fetches, want 1 (second lookup from memory)", n)
		}
		if n := rowCount(t, v.db, "origin"); n != 1 {
			t.Errorf("%d rows stored", n)
		}
		// A new Keys over the same database: no fetch.
		k2 := w.newKeys(v, nil)
		if got, err := k2.VerifyKey(ctx, "origin", o.keyID, 0); err != nil || !got.Equal(pubOf(o.key)) {
			t.Fatalf("after restart: %x, %v", got, err)
		}
		if n := o.requests.Load(); n != 1 {
			t.Errorf("%d fetches after restart, want 1 (from the database)", n)
		}
		// Our own key needs no fetch.
		if got, err := v.keys.VerifyKey(ctx, "verifier", v.keyID, 0); err != nil || !got.Equal(pubOf(v.key)) {
			t.Errorf("own key: %x, %v", got, err)
		}
		if _, err := v.keys.VerifyKey(ctx, "verifier", "ed25519:other", 0); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("own unknown key: %v", err)
		}
	})
}

// TestExpiry: valid_until_ts bounds a key's use, capped at 7 days after
// the fetch; an expired key is fetched again, but at most once a minute.
func TestExpiry(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend)
		o := w.fakeOrigin("origin")
		v := w.listen("verifier")
		w.start(v, nil)
		start := w.clock.now()
		o.standard(t, start, time.Hour)

		at := func(d time.Duration) int64 { return start.Add(d).UnixMilli() }
		if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, at(30*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, at(time.Hour)); err != nil {
			t.Fatalf("at valid_until_ts exactly: %v", err)
		}
		// Beyond valid_until_ts: fetched again (the origin still says 1h).
		if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, at(2*time.Hour)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("beyond valid_until_ts: %v", err)
		}
		if n := o.requests.Load(); n != 2 {
			t.Errorf("%d fetches, want 2", n)
		}
		// Missed recently: no new fetch.
		if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, at(2*time.Hour)); err == nil {
			t.Fatal("expired key accepted")
		}
		if n := o.requests.Load(); n != 2 {
			t.Errorf("%d fetches within the negative cache, want 2", n)
		}
		// A minute later the origin has a fresh response: fetched, valid.
		w.clock.advance(negativeTTL + time.Second)
		o.standard(t, start, 30*24*time.Hour)
		if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, at(2*time.Hour)); err != nil {
			t.Fatalf("after the origin refreshed: %v", err)
		}
		if n := o.requests.Load(); n != 3 {
			t.Errorf("%d fetches, want 3", n)
		}
		// 30 days claimed, 7 days (from the fetch) honoured.
		fetched := w.clock.now()
		if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, fetched.Add(6*24*time.Hour).UnixMilli()); err != nil {
			t.Errorf("within 7 days: %v", err)
		}
		if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, fetched.Add(8*24*time.Hour).UnixMilli()); err == nil {
			t.Error("valid_until_ts not capped at 7 days")
		}
		vk, ok := v.keys.Finder()(rooms.ServerName("origin"), o.keyID)
		if !ok || !vk.Key.Equal(pubOf(o.key)) || vk.ValidUntilTS != fetched.Add(MaxValidity).UnixMilli() {
			t.Errorf("Finder = %+v, %v; want ValidUntilTS %d", vk, ok, fetched.Add(MaxValidity).UnixMilli())
		}
	})
}

// TestOldVerifyKeys: a key from old_verify_keys is valid only before its
// expired_ts, so it verifies old events but never a request.
func TestOldVerifyKeys(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend)
		o := w.fakeOrigin("origin")
		v := w.listen("verifier")
		w.start(v, nil)
		now := w.clock.now()
		oldPriv := newKey(t)
		expired := now.Add(-time.Hour).UnixMilli()
		o.serve(response{
			server: "origin", validUntil: now.Add(time.Hour).UnixMilli(),
			verify: map[string]ed25519.PublicKey{o.keyID: pubOf(o.key)},
			old:    map[string]oldKey{"ed25519:old": {key: pubOf(oldPriv), expiredTS: expired}},
		}.signed(t, "origin", o.keyID, o.key))

		if got, err := v.keys.VerifyKey(ctx, "origin", "ed25519:old", expired-1); err != nil || !got.Equal(pubOf(oldPriv)) {
			t.Fatalf("before expired_ts: %x, %v", got, err)
		}
		if _, err := v.keys.VerifyKey(ctx, "origin", "ed25519:old", expired); err == nil {
			t.Error("old key valid at expired_ts")
		}
		if _, err := v.keys.VerifyKey(ctx, "origin", "ed25519:old", 0); err == nil {
			t.Error("old key valid now (it would authenticate requests)")
		}
		vk, ok := v.keys.Finder()("origin", "ed25519:old")
		if !ok || vk.ValidUntilTS != expired-1 {
			t.Errorf("Finder = %+v, %v; want ValidUntilTS %d", vk, ok, expired-1)
		}
		// An old key is final: looking it up again fetches nothing.
		if n := o.requests.Load(); n != 1 {
			t.Errorf("%d fetches, want 1", n)
		}
	})
}

// TestForgedResponses: a response not validly signed by its own keys, or
// for another server, is rejected and nothing is stored.
func TestForgedResponses(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend)
		o := w.fakeOrigin("origin")
		v := w.listen("verifier")
		w.start(v, nil)
		now := w.clock.now()
		other := newKey(t)
		good := response{server: "origin", validUntil: now.Add(time.Hour).UnixMilli(),
			verify: map[string]ed25519.PublicKey{o.keyID: pubOf(o.key)}}
		tampered := good.signed(t, "origin", o.keyID, o.key)
		tampered = []byte(string(tampered[:len(tampered)-1]) + `,"extra":1}`)
		tests := []struct {
			name string
			body []byte
		}{
			{"signed by another key", good.signed(t, "origin", o.keyID, other)},
			{"signed by an unlisted key ID", good.signed(t, "origin", "ed25519:unlisted", o.key)},
			{"unsigned", cjson.Marshal(good.value())},
			{"changed after signing", tampered},
			{"another server's response", response{server: "elsewhere", validUntil: good.validUntil, verify: good.verify}.signed(t, "elsewhere", o.keyID, o.key)},
			{"no valid_until_ts", mustSign(t, good.value().Without("valid_until_ts"), o.keyID, o.key)},
			{"bad key", mustSign(t, good.value().With("verify_keys", cjson.MustFromGo(map[string]any{o.keyID: map[string]any{"key": "!!"}})), o.keyID, o.key)},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				o.serve(tc.body)
				w.clock.advance(negativeTTL + time.Second) // past the previous case's miss
				if _, err := v.keys.VerifyKey(ctx, "origin", o.keyID, 0); err == nil {
					t.Fatal("forged response accepted")
				}
				if n := o.requests.Load(); n != int64(i+1) {
					t.Errorf("%d fetches, want %d", n, i+1)
				}
				if n := rowCount(t, v.db, "origin"); n != 0 {
					t.Errorf("%d rows stored", n)
				}
			})
		}
	})
}

func mustSign(t *testing.T, v cjson.Value, keyID string, priv ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := signValue(v, "origin", keyID, priv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConcurrentLookupsShareAFetch: lookups arriving while a fetch runs
// wait for it instead of fetching again.
func TestConcurrentLookupsShareAFetch(t *testing.T) {
	w := newWorld(t, "sqlite")
	o := w.fakeOrigin("origin")
	v := w.listen("verifier")
	w.start(v, nil)
	o.standard(t, w.clock.now(), time.Hour)
	gate := make(chan struct{})
	o.mu.Lock()
	o.gate = gate
	o.mu.Unlock()

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.keys.VerifyKey(ctx, "origin", o.keyID, 0)
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for o.requests.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no fetch started")
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := o.requests.Load(); n != 1 {
		t.Errorf("%d fetches for 20 concurrent lookups, want 1", n)
	}
}

// TestNotary: a server that cannot reach an origin gets its keys from a
// trusted notary, which fetched them itself; the notary's signature and
// the origin's are both checked.
func TestNotary(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend)
		o := w.fakeOrigin("origin")
		n := w.listen("notary")
		bad := w.listen("badnotary")
		v := w.listen("verifier")
		w.start(n, nil)
		w.serveOwnKey(bad)
		// The verifier cannot reach the origin.
		w.start(v, []string{"badnotary", "notary"}, "origin")
		o.standard(t, w.clock.now(), time.Hour)

		// badnotary answers queries with a made-up key for the origin,
		// correctly self-signed by that key, but signed with a key that is
		// not badnotary's: if its signature were not checked, the made-up
		// key would be believed.
		impostor, madeUp := newKey(t), newKey(t)
		var badAsked atomic.Int64
		bad.mux.HandleFunc("POST /_matrix/key/v2/query", func(rw http.ResponseWriter, r *http.Request) {
			badAsked.Add(1)
			forged := response{server: "origin", validUntil: w.clock.now().Add(time.Hour).UnixMilli(),
				verify: map[string]ed25519.PublicKey{o.keyID: pubOf(madeUp)}}.value()
			forged, err := cjsonSign(forged, "origin", o.keyID, madeUp)
			if err != nil {
				t.Error(err)
			}
			signed, err := signValue(forged, "badnotary", bad.keyID, impostor)
			if err != nil {
				t.Error(err)
			}
			server.WriteRawJSON(rw, http.StatusOK, []byte(`{"server_keys":[`+string(signed)+`]}`))
		})

		got, err := v.keys.VerifyKey(ctx, "origin", o.keyID, 0)
		if err != nil || !got.Equal(pubOf(o.key)) {
			t.Fatalf("through the notary: %x, %v", got, err)
		}
		if n := o.requests.Load(); n != 1 {
			t.Errorf("origin served %d requests, want 1 (the notary's)", n)
		}
		if n := badAsked.Load(); n != 1 {
			t.Errorf("badnotary asked %d times, want 1 (before notary)", n)
		}
		// The stored copy keeps only the origin's signature.
		stored, err := v.keys.storedResponses(ctx, "origin")
		if err != nil || len(stored) != 1 {
			t.Fatalf("stored %v, %v", stored, err)
		}
		if sigs, _ := stored[0].Get("signatures"); sigs.Len() != 1 || !sigs.Has("origin") {
			t.Errorf("stored signatures %s", sigs)
		}

		// A notary that answers with a forged origin response (its own
		// signature fine, the origin's self-signature not) is refused.
		forger := w.listen("forger")
		w.serveOwnKey(forger)
		v2 := w.listen("verifier2")
		w.start(v2, []string{"forger"}, "origin")
		fake := newKey(t)
		forger.mux.HandleFunc("POST /_matrix/key/v2/query", func(rw http.ResponseWriter, r *http.Request) {
			forged := response{server: "origin", validUntil: w.clock.now().Add(time.Hour).UnixMilli(),
				verify: map[string]ed25519.PublicKey{o.keyID: pubOf(fake)}}.value()
			forged, _ = cjsonSign(forged, "origin", o.keyID, o.key) // signature over other keys: invalid
			forged = forged.With("verify_keys", cjson.MustFromGo(map[string]any{o.keyID: map[string]any{"key": b64(pubOf(fake))}}))
			signed, _ := cjsonSign(forged, "forger", forger.keyID, forger.key)
			server.WriteRawJSON(rw, http.StatusOK, cjson.Marshal(cjson.Obj(cjson.M("server_keys", cjson.Arr(signed)))))
		})
		if _, err := v2.keys.VerifyKey(ctx, "origin", o.keyID, 0); err == nil {
			t.Fatal("forged origin response accepted through a notary")
		}
		if n := rowCount(t, v2.db, "origin"); n != 0 {
			t.Errorf("%d rows stored from a forged response", n)
		}
	})
}

// TestNotaryEndpoints: the query API answers from the cache, fetches when
// the cache is not valid long enough, keeps answering from the cache when
// the origin is down, and signs every response.
func TestNotaryEndpoints(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend)
		o := w.fakeOrigin("origin")
		n := w.listen("notary")
		asker := w.listen("asker")
		w.start(n, nil)
		w.start(asker, nil)
		start := w.clock.now()
		o.standard(t, start, time.Hour)

		query := func(t *testing.T, method, path string, body any) []cjson.Value {
			t.Helper()
			var raw json.RawMessage
			var err error
			if method == "GET" {
				err = asker.cli.GetUnsigned(ctx, "notary", path, &raw)
			} else {
				err = asker.cli.Do(ctx, "notary", method, path, body, &raw)
			}
			if err != nil {
				t.Fatal(err)
			}
			v, err := cjson.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			list, _ := v.Get("server_keys")
			for _, r := range list.Array() {
				name, _ := r.GetStr("server_name")
				// Each response carries the notary's valid signature and
				// its server's own.
				if err := verifyWith(r, "notary", n.keyID, pubOf(n.key)); err != nil {
					t.Errorf("notary signature on %s: %v", name, err)
				}
				if name == "origin" {
					if err := verifyWith(r, "origin", o.keyID, pubOf(o.key)); err != nil {
						t.Errorf("origin signature: %v", err)
					}
				}
			}
			return list.Array()
		}

		if got := query(t, "GET", "/_matrix/key/v2/query/origin", nil); len(got) != 1 {
			t.Fatalf("%d responses", len(got))
		}
		if n := o.requests.Load(); n != 1 {
			t.Errorf("%d fetches, want 1", n)
		}
		// Cached and valid long enough: no fetch.
		min := start.Add(30 * time.Minute).UnixMilli()
		query(t, "POST", "/_matrix/key/v2/query", map[string]any{"server_keys": map[string]any{
			"origin": map[string]any{o.keyID: map[string]any{"minimum_valid_until_ts": min}},
			"notary": map[string]any{},
		}})
		if n := o.requests.Load(); n != 1 {
			t.Errorf("%d fetches, want 1 (served from cache)", n)
		}
		// Wanting validity beyond the cached response: fetched afresh.
		o.standard(t, start, 3*time.Hour)
		got := query(t, "GET", "/_matrix/key/v2/query/origin?minimum_valid_until_ts="+itoa(start.Add(2*time.Hour).UnixMilli()), nil)
		if n := o.requests.Load(); n != 2 {
			t.Errorf("%d fetches, want 2", n)
		}
		if len(got) != 1 {
			t.Fatalf("%d responses", len(got))
		}
		if vu, _ := got[0].GetInt("valid_until_ts"); vu != start.Add(3*time.Hour).UnixMilli() {
			t.Errorf("valid_until_ts %d, want the refreshed one", vu)
		}
		// The origin goes down: the cached response is still served.
		o.mu.Lock()
		o.offline = true
		o.mu.Unlock()
		got = query(t, "GET", "/_matrix/key/v2/query/origin?minimum_valid_until_ts="+itoa(start.Add(5*time.Hour).UnixMilli()), nil)
		if len(got) != 1 {
			t.Fatalf("with the origin down: %d responses, want the cached one", len(got))
		}
		// A server nobody knows: an empty list.
		if got := query(t, "GET", "/_matrix/key/v2/query/unknown.invalid", nil); len(got) != 0 {
			t.Errorf("unknown server: %d responses", len(got))
		}
		// Bad requests.
		for _, tc := range []struct {
			body any
			code string
		}{
			{json.RawMessage(`{}`), "M_MISSING_PARAM"},
			{json.RawMessage(`[1]`), "M_NOT_JSON"},
		} {
			err := asker.cli.Do(ctx, "notary", "POST", "/_matrix/key/v2/query", tc.body, nil)
			var re *transport.RemoteError
			if !errors.As(err, &re) || re.Status != 400 || re.ErrCode != tc.code {
				t.Errorf("%s: %v, want 400 %s", tc.body, err, tc.code)
			}
		}
	})
}

// TestOwnKeys: GET /_matrix/key/v2/server is our key, self-signed, valid
// for Config.Validity, with an empty old_verify_keys, in canonical JSON.
func TestOwnKeys(t *testing.T) {
	w := newWorld(t, "sqlite")
	s := w.listen("hs1")
	c := w.listen("hs2")
	w.start(s, nil)
	w.start(c, nil)
	for _, path := range []string{"/_matrix/key/v2/server", "/_matrix/key/v2/server/" + s.keyID} {
		var raw json.RawMessage
		if err := c.cli.GetUnsigned(ctx, "hs1", path, &raw); err != nil {
			t.Fatal(err)
		}
		v, err := cjson.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if string(cjson.Marshal(v)) != string(raw) {
			t.Errorf("not canonical: %s", raw)
		}
		sk, err := parseServerKeys(v, "hs1")
		if err != nil {
			t.Fatal(err)
		}
		if !sk.verify[s.keyID].Equal(pubOf(s.key)) || len(sk.verify) != 1 || len(sk.old) != 0 {
			t.Errorf("keys %+v", sk)
		}
		if want := w.clock.now().Add(DefaultValidity).UnixMilli(); sk.validUntil != want {
			t.Errorf("valid_until_ts %d, want %d", sk.validUntil, want)
		}
		if old, ok := v.Get("old_verify_keys"); !ok || old.Kind() != cjson.Object || old.Len() != 0 {
			t.Errorf("old_verify_keys %s", old)
		}
	}
}

// TestRequestsBetweenServers: hs1 signs a request with its Client, hs2
// authenticates it with a Verifier that fetches hs1's key through Keys.
func TestRequestsBetweenServers(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend)
		hs1 := w.listen("hs1")
		hs2 := w.listen("hs2")
		w.start(hs1, nil)
		w.start(hs2, nil)
		for _, n := range []*node{hs1, hs2} {
			n.mux.Handle("PUT /_matrix/federation/v1/send/{txn}", fedhttp.Wrap(transport.NewVerifier(n.name, n.keys), 0,
				func(rw http.ResponseWriter, _ *http.Request, req *fedhttp.Request) {
					server.WriteJSON(rw, http.StatusOK, map[string]string{"origin": req.Origin})
				}))
		}
		for _, pair := range [][2]*node{{hs1, hs2}, {hs2, hs1}} {
			from, to := pair[0], pair[1]
			var got struct{ Origin string }
			if err := from.cli.Do(ctx, to.name, "PUT", "/_matrix/federation/v1/send/1", map[string]any{"pdus": []any{}}, &got); err != nil {
				t.Fatalf("%s -> %s: %v", from.name, to.name, err)
			}
			if got.Origin != from.name {
				t.Errorf("%s -> %s: origin %q", from.name, to.name, got.Origin)
			}
		}
		// An impostor claiming to be hs1 with a key hs1 does not publish.
		imp, err := transport.NewClient(transport.Config{ServerName: "hs1", KeyID: hs1.keyID, Key: newKey(t),
			Resolve: w.resolveAll(), RootCAs: w.pool})
		if err != nil {
			t.Fatal(err)
		}
		defer imp.Close()
		err = imp.Do(ctx, "hs2", "PUT", "/_matrix/federation/v1/send/2", map[string]any{}, nil)
		var re *transport.RemoteError
		if !errors.As(err, &re) || re.Status != 401 || re.ErrCode != "M_UNAUTHORIZED" {
			t.Fatalf("impostor: %v", err)
		}
	})
}

func TestNewErrors(t *testing.T) {
	w := newWorld(t, "sqlite")
	n := w.listen("hs1")
	w.start(n, nil)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no server name", Config{KeyID: "ed25519:a", Key: n.key}},
		{"no key", Config{ServerName: "hs1"}},
		{"bad trusted server", Config{ServerName: "hs1", KeyID: "ed25519:a", Key: n.key, TrustedServers: []string{"bad name"}}},
	} {
		if _, err := New(tc.cfg, n.db, n.cli, nil); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
