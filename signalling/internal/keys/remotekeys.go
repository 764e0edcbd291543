package keys

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// Keys of users on other servers (Client-Server API, POST /keys/query
// and /keys/claim): each server is asked once per request for all of its
// users, all servers at once, and a server that does not answer within
// the request's timeout is named in failures instead.

const (
	// defaultRemoteTimeout: the timeout parameter's "10 seconds is the
	// recommended default".
	defaultRemoteTimeout = 10 * time.Second
	// maxRemoteTimeout bounds what a client may ask for.
	maxRemoteTimeout = time.Minute
	// maxRemoteAsks bounds the servers asked at the same time.
	maxRemoteAsks = 16
)

// remoteTimeout is the wait a request's timeout (milliseconds) asks for.
func remoteTimeout(ms *int64) time.Duration {
	if ms == nil || *ms <= 0 {
		return defaultRemoteTimeout
	}
	return min(time.Duration(*ms)*time.Millisecond, maxRemoteTimeout)
}

// remoteFailureOf is the failures entry of a server that did not answer.
// The spec leaves its shape open; Synapse's is {status, message}.
func remoteFailureOf(err error) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"status": 503, "message": err.Error()})
	return b
}

// byServer groups the remote users of m by their server.
func byServer[V any](k *Keys, m map[string]V) map[string]map[string]V {
	out := map[string]map[string]V{}
	for user, v := range m {
		srv := serverOf(user)
		if srv == "" || srv == k.cfg.ServerName {
			continue
		}
		if out[srv] == nil {
			out[srv] = map[string]V{}
		}
		out[srv][user] = v
	}
	return out
}

// askServers sends each server its body through ask, all at once, and
// waits at most timeout. It returns the answers of the servers that gave
// one and a failure for each of the others.
func askServers(ctx context.Context, bodies map[string][]byte, timeout time.Duration,
	ask func(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error)) (answers, failures map[string]json.RawMessage) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answers, failures = map[string]json.RawMessage{}, map[string]json.RawMessage{}
	var mu sync.Mutex // guards answers and failures
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxRemoteAsks)
	for srv, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				mu.Lock()
				failures[srv] = remoteFailureOf(ctx.Err())
				mu.Unlock()
				return
			}
			ans, err := ask(ctx, srv, body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures[srv] = remoteFailureOf(err)
				return
			}
			answers[srv] = ans
		}()
	}
	wg.Wait()
	return answers, failures
}

// queryResponse is a /keys/query answer with its values kept raw.
type queryResponse struct {
	DeviceKeys      map[string]json.RawMessage `json:"device_keys"`
	Failures        map[string]json.RawMessage `json:"failures"`
	MasterKeys      map[string]json.RawMessage `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage `json:"user_signing_keys"`
}

// queryAll is query with the remote users' keys asked of their servers
// and merged in (Client-Server API, POST /keys/query; Server-Server API,
// POST /user/keys/query).
func (k *Keys) queryAll(ctx context.Context, requester string, query map[string][]string, timeout time.Duration) ([]byte, error) {
	body, err := k.query(ctx, requester, query)
	if err != nil || k.deps.Remote == nil {
		return body, err
	}
	remote := byServer(k, query)
	if len(remote) == 0 {
		return body, nil
	}
	var out queryResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, err
	}
	bodies := map[string][]byte{}
	for srv, users := range remote {
		for user, devs := range users {
			if devs == nil {
				users[user] = []string{}
			}
		}
		if bodies[srv], err = json.Marshal(map[string]any{"device_keys": users}); err != nil {
			return nil, err
		}
	}
	answers, failures := askServers(ctx, bodies, timeout, k.deps.Remote.QueryRemoteKeys)
	for srv, ans := range answers {
		var a struct {
			DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
			MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
			SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
		}
		if err := json.Unmarshal(ans, &a); err != nil {
			failures[srv] = remoteFailureOf(err)
			continue
		}
		delete(out.Failures, srv)
		asked := remote[srv]
		for user, devs := range a.DeviceKeys {
			wanted, ok := asked[user]
			if !ok {
				continue // not asked, or not the answering server's user
			}
			keep := map[string][]byte{}
			for dev, raw := range devs {
				if (len(wanted) == 0 || slices.Contains(wanted, dev)) && ownedBy(raw, user, dev) {
					keep[dev] = raw
				}
			}
			out.DeviceKeys[user] = rawObject(keep)
		}
		for _, m := range []struct{ from, to map[string]json.RawMessage }{
			{a.MasterKeys, out.MasterKeys}, {a.SelfSigningKeys, out.SelfSigningKeys},
		} {
			for user, raw := range m.from {
				if _, ok := asked[user]; ok && ownedBy(raw, user, "") {
					m.to[user] = raw
				}
			}
		}
	}
	for srv, f := range failures {
		out.Failures[srv] = f
	}
	return rawObject(map[string][]byte{
		"device_keys":       rawValues(out.DeviceKeys),
		"failures":          rawValues(out.Failures),
		"master_keys":       rawValues(out.MasterKeys),
		"self_signing_keys": rawValues(out.SelfSigningKeys),
		"user_signing_keys": rawValues(out.UserSigningKeys),
	}), nil
}

// ownedBy reports whether raw is a key object of user (and of device,
// unless device is ""): a server may only answer for its own users, and
// a key object names the user and device it belongs to.
func ownedBy(raw []byte, user, device string) bool {
	var o struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
	}
	if !isObject(raw) || json.Unmarshal(raw, &o) != nil {
		return false
	}
	return o.UserID == user && (device == "" || o.DeviceID == device)
}

// rawValues is rawObject over a map of raw JSON values (never nil).
func rawValues(m map[string]json.RawMessage) []byte {
	out := make(map[string][]byte, len(m))
	for key, v := range m {
		out[key] = v
	}
	return rawObject(out)
}

// claimRemote claims the remote users' keys of a /keys/claim request
// from their servers. It returns the keys claimed (user -> device ->
// {"alg:id": key}), the servers that answered and a failure for each
// that did not.
func (k *Keys) claimRemote(ctx context.Context, req map[string]map[string]string, timeout time.Duration) (claimed map[string]map[string][]byte, answered []string, failures map[string]json.RawMessage, err error) {
	claimed = map[string]map[string][]byte{}
	remote := byServer(k, req)
	if k.deps.Remote == nil || len(remote) == 0 {
		return claimed, nil, nil, nil
	}
	bodies := map[string][]byte{}
	for srv, users := range remote {
		if bodies[srv], err = json.Marshal(map[string]any{"one_time_keys": users}); err != nil {
			return nil, nil, nil, err
		}
	}
	answers, failures := askServers(ctx, bodies, timeout, k.deps.Remote.ClaimRemoteKeys)
	for srv, ans := range answers {
		var a struct {
			OneTimeKeys map[string]map[string]json.RawMessage `json:"one_time_keys"`
		}
		if err := json.Unmarshal(ans, &a); err != nil {
			failures[srv] = remoteFailureOf(err)
			continue
		}
		answered = append(answered, srv)
		for user, devs := range a.OneTimeKeys {
			asked, ok := remote[srv][user]
			if !ok {
				continue
			}
			for dev, keys := range devs {
				if _, ok := asked[dev]; !ok || !isObject(keys) {
					continue
				}
				if claimed[user] == nil {
					claimed[user] = map[string][]byte{}
				}
				claimed[user][dev] = keys
			}
		}
	}
	return claimed, answered, failures, nil
}
