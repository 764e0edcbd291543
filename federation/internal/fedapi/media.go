package fedapi

import (
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
)

// timeout_ms of the media endpoints: "defaults to 20000 (20 seconds)";
// the repository "SHOULD impose a maximum value" (content_repository.yaml).
const (
	defaultMediaWait = 20 * time.Second
	maxMediaWait     = 60 * time.Second
)

// mediaDownload is GET /media/download/{mediaId} (Server-Server API,
// "Content Repository").
func (a *API) mediaDownload(w http.ResponseWriter, r *http.Request, _ *fedhttp.Request) {
	q, err := mediaQuery(r)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	a.serveMedia(w, r, q)
}

// mediaThumbnail is GET /media/thumbnail/{mediaId}?width=&height=&method=&animated=.
func (a *API) mediaThumbnail(w http.ResponseWriter, r *http.Request, _ *fedhttp.Request) {
	q, err := mediaQuery(r)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	t := &fedlocal.ThumbnailSize{}
	for _, d := range []struct {
		name string
		dst  *int
	}{{"width", &t.Width}, {"height", &t.Height}} {
		v := r.URL.Query().Get(d.name)
		if v == "" {
			server.WriteError(w, mxerr.MissingParam("Missing "+d.name))
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			server.WriteError(w, mxerr.InvalidParam(d.name+" must be a positive integer"))
			return
		}
		*d.dst = n
	}
	switch r.URL.Query().Get("method") {
	case "", "scale":
	case "crop":
		t.Crop = true
	default:
		server.WriteError(w, mxerr.InvalidParam("method must be crop or scale"))
		return
	}
	switch r.URL.Query().Get("animated") {
	case "", "false":
	case "true":
		t.Animated = true
	default:
		server.WriteError(w, mxerr.InvalidParam("animated must be true or false"))
		return
	}
	q.Thumbnail = t
	a.serveMedia(w, r, q)
}

// mediaQuery reads the media ID and timeout_ms common to both endpoints.
func mediaQuery(r *http.Request) (fedlocal.MediaQuery, error) {
	q := fedlocal.MediaQuery{MediaID: r.PathValue("mediaId"), Wait: defaultMediaWait}
	if !validMediaID(q.MediaID) {
		return q, mxerr.NotFound("Media not found")
	}
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return q, mxerr.InvalidParam("timeout_ms must be an integer")
		}
		q.Wait = min(time.Duration(max(ms, 0))*time.Millisecond, maxMediaWait)
	}
	return q, nil
}

// validMediaID: media IDs are [A-Za-z0-9_-] (Client-Server API, "Content
// repository", "Security considerations").
func validMediaID(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// serveMedia answers with the multipart/mixed body the spec requires:
// a JSON part with the media's metadata (always {} for now), then the
// content with its Content-Type and Content-Disposition.
func (a *API) serveMedia(w http.ResponseWriter, r *http.Request, q fedlocal.MediaQuery) {
	f, err := a.local.Media(r.Context(), q)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	defer f.Body.Close()
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err == nil {
		_, err = io.WriteString(meta, "{}")
	}
	if err == nil {
		h := textproto.MIMEHeader{"Content-Type": {f.ContentType}}
		if f.Disposition != "" {
			h.Set("Content-Disposition", f.Disposition)
		}
		var part io.Writer
		if part, err = mw.CreatePart(h); err == nil {
			_, err = io.Copy(part, f.Body)
		}
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		// The status is out; a cut body is all the caller can learn.
		a.log.Debug("fedapi: media response cut short", "media_id", q.MediaID, "err", err)
	}
}
