package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// WriteJSON writes v, encoded with encoding/json, with status. Use it for
// bodies that are not signed; signed bodies go through WriteRawJSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, err)
		return
	}
	WriteRawJSON(w, status, b)
}

// WriteRawJSON writes body, which must already be JSON, unchanged: bytes
// that were hashed or signed must reach the peer exactly as signed.
func WriteRawJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body) // a write error means the client went away
}

// WriteError answers with err as a Matrix standard error response
// (Client-Server API, "Standard error response"). The first *MatrixError in
// err's chain gives the status, errcode and message. Any other error is an
// internal failure: the client gets 500 M_UNKNOWN without the error's text,
// which goes to the request's log line instead.
func WriteError(w http.ResponseWriter, err error) {
	var me *mxerr.MatrixError
	if !errors.As(err, &me) {
		noteError(w, err)
		me = mxerr.Unknown()
	} else if me.HTTPStatus() >= 500 {
		noteError(w, err)
	}
	b, jerr := json.Marshal(me)
	if jerr != nil { // cannot happen for two strings; keep the response valid anyway
		b = []byte(`{"errcode":"M_UNKNOWN","error":"Internal server error"}`)
	}
	WriteRawJSON(w, me.HTTPStatus(), b)
}
