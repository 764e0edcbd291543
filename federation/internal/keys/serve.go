package keys

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/servername"
	"github.com/plexus-chat/plexus/internal/signing"
)

const (
	// maxQueryBody bounds a POST /_matrix/key/v2/query body.
	maxQueryBody = 1 << 20
	// maxQueryServers bounds the servers one notary query may name: the
	// endpoint is unauthenticated and each server may cost us a fetch.
	maxQueryServers = 100
)

// Register adds the key endpoints, which need no authentication
// ("Retrieving server keys"). Early revisions of the API had a trailing
// {keyId} segment on /server that servers ignore; it is gone from the
// spec, but Synapse still answers it and old servers may ask for it, so it
// gets the same answer.
func (k *Keys) Register(r server.Router) {
	own := http.HandlerFunc(k.serveOwn)
	r.Handle("GET /_matrix/key/v2/server", own)
	r.Handle("GET /_matrix/key/v2/server/{keyID}", own)
	r.Handle("GET /_matrix/key/v2/query/{serverName}", http.HandlerFunc(k.serveQueryOne))
	r.Handle("POST /_matrix/key/v2/query", http.HandlerFunc(k.serveQuery))
}

// OwnResponse returns our key response ("Publishing Keys") in canonical
// JSON, self-signed, valid for Config.Validity from now. We keep no old
// keys, so old_verify_keys is empty.
func (k *Keys) OwnResponse() ([]byte, error) {
	v, err := k.ownResponse()
	if err != nil {
		return nil, err
	}
	return cjson.Marshal(v), nil
}

func (k *Keys) ownResponse() (cjson.Value, error) {
	obj := cjson.Obj(
		cjson.M("server_name", cjson.Str(k.cfg.ServerName)),
		cjson.M("verify_keys", cjson.Obj(cjson.M(k.cfg.KeyID,
			cjson.Obj(cjson.M("key", cjson.Str(base64.RawStdEncoding.EncodeToString(k.pub))))))),
		cjson.M("old_verify_keys", cjson.Obj()),
		cjson.M("valid_until_ts", cjson.Integer(k.cfg.Now().Add(k.cfg.Validity).UnixMilli())),
	)
	signed, err := signing.Sign(obj, k.cfg.ServerName, k.cfg.KeyID, k.cfg.Key)
	if err != nil {
		return cjson.Value{}, fmt.Errorf("keys: signing our key response: %w", err)
	}
	return signed, nil
}

func (k *Keys) serveOwn(w http.ResponseWriter, _ *http.Request) {
	b, err := k.OwnResponse()
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, b)
}

// serveQueryOne is GET /_matrix/key/v2/query/{serverName}.
func (k *Keys) serveQueryOne(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("serverName")
	if err := servername.Check(name); err != nil {
		server.WriteError(w, mxerr.InvalidParam("Invalid server name"))
		return
	}
	minValid := k.nowMS()
	if s := r.URL.Query().Get("minimum_valid_until_ts"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			server.WriteError(w, mxerr.InvalidParam("minimum_valid_until_ts must be an integer"))
			return
		}
		minValid = n
	}
	list, err := k.notarise(r.Context(), name, minValid)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	k.writeList(w, list)
}

// serveQuery is POST /_matrix/key/v2/query.
func (k *Keys) serveQuery(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxQueryBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			server.WriteError(w, mxerr.TooLarge("Request body too large"))
			return
		}
		server.WriteError(w, mxerr.BadJSON("Could not read the request body"))
		return
	}
	var req struct {
		ServerKeys map[string]map[string]struct {
			MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts"`
		} `json:"server_keys"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		server.WriteError(w, mxerr.NotJSON("Request body is not a valid key query"))
		return
	}
	if req.ServerKeys == nil {
		server.WriteError(w, mxerr.MissingParam("server_keys is required"))
		return
	}
	if len(req.ServerKeys) > maxQueryServers {
		server.WriteError(w, mxerr.Newf(http.StatusBadRequest, mxerr.CodeInvalidParam, "At most %d servers per query", maxQueryServers))
		return
	}
	list := []cjson.Value{}
	for name, criteria := range req.ServerKeys {
		if servername.Check(name) != nil {
			continue
		}
		// "If not supplied, the notary server MUST use the current
		// time"; of several key IDs the strictest wins.
		minValid := k.nowMS()
		for _, c := range criteria {
			if c.MinimumValidUntilTS != nil && *c.MinimumValidUntilTS > minValid {
				minValid = *c.MinimumValidUntilTS
			}
		}
		got, err := k.notarise(r.Context(), name, minValid)
		if err != nil {
			server.WriteError(w, err)
			return
		}
		list = append(list, got...)
	}
	k.writeList(w, list)
}

func (k *Keys) writeList(w http.ResponseWriter, list []cjson.Value) {
	server.WriteRawJSON(w, http.StatusOK, cjson.Marshal(cjson.Obj(cjson.M("server_keys", cjson.Arr(list...)))))
}

// notarise returns server's key responses with our signature added. When
// none we hold is valid until minValid, it fetches afresh from the server;
// if that fails it still answers with what it holds, "so that the
// signatures of old events can still be checked" (GET
// /_matrix/key/v2/server). A server that is unreachable and unknown gets
// an empty list.
func (k *Keys) notarise(ctx context.Context, name string, minValid int64) ([]cjson.Value, error) {
	if name == k.cfg.ServerName {
		own, err := k.ownResponse()
		if err != nil {
			return nil, err
		}
		return []cjson.Value{own}, nil
	}
	stored, err := k.storedResponses(ctx, name)
	if err != nil {
		return nil, err
	}
	fresh := false
	for _, v := range stored {
		if ts, _ := v.GetInt("valid_until_ts"); ts >= minValid {
			fresh = true
		}
	}
	if !fresh {
		k.refresh(ctx, name)
		if stored, err = k.storedResponses(ctx, name); err != nil {
			return nil, err
		}
	}
	out := make([]cjson.Value, 0, len(stored))
	for _, v := range stored {
		signed, err := signing.Sign(v, k.cfg.ServerName, k.cfg.KeyID, k.cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("keys: notary signature: %w", err)
		}
		out = append(out, signed)
	}
	return out, nil
}

// refresh fetches server's keys from the server itself, sharing a fetch
// already running, unless one failed within negativeTTL.
func (k *Keys) refresh(ctx context.Context, name string) {
	if k.recentlyMissed(name, "") {
		return
	}
	_, _ = k.flight.Do(ctx, name+"\x00\x00refresh", func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(k.life, fetchBudget)
		defer cancel()
		if err := k.fetchDirect(ctx, name); err != nil {
			k.log.Info("notary: fetching keys failed", "server", name, "err", err)
			k.mu.Lock()
			k.negative[name+"\x00"] = k.cfg.Now().Add(negativeTTL)
			k.mu.Unlock()
		}
		return struct{}{}, nil
	})
}
