package media

import (
	"mime"
	"net/http"
	"strings"
)

// contentSecurityPolicy is the policy the spec recommends for served
// content (Client-Server API, "Content repository").
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';"

// inlineTypes are the types the spec allows with Content-Disposition:
// inline (Client-Server API, "Content repository", "Serving inline
// content"); anything else is served as an attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true,
	"image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true,
	"audio/ogg": true, "audio/wave": true, "audio/wav": true, "audio/x-wav": true,
	"audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// parseType parses a Content-Type into its lower-cased type/subtype and
// parameters. mime.ParseMediaType also takes a lone token (it serves
// Content-Disposition too), which is no media type.
func parseType(ct string) (string, map[string]string, bool) {
	t, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", nil, false
	}
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || typ == "" || sub == "" {
		return "", nil, false
	}
	return t, params, true
}

// baseType is the lower-cased type/subtype of a Content-Type, or "" if
// it does not parse.
func baseType(ct string) string {
	t, _, _ := parseType(ct)
	return t
}

// servedContentType is the Content-Type a download is served with: the
// uploaded one, with a charset added to text types that lack one, which
// the spec counts as "reasonably close" (GET .../download, Content-Type).
// Browsers would otherwise guess the charset from the bytes.
func servedContentType(ct string) string {
	t, params, ok := parseType(ct)
	if !ok {
		return "application/octet-stream"
	}
	if _, ok := params["charset"]; !ok && (strings.HasPrefix(t, "text/") || t == "application/json" || t == "application/ld+json") {
		return ct + "; charset=utf-8"
	}
	return ct
}

// contentDisposition is "inline" for the safe types and "attachment"
// otherwise, with filename when there is one: a token or quoted string
// when it is plain ASCII, else RFC 5987's percent-encoded filename* (RFC
// 6266, section 4.3), which mime.FormatMediaType chooses for us.
func contentDisposition(ct, filename string) string {
	kind := "attachment"
	if inlineTypes[baseType(ct)] {
		kind = "inline"
	}
	if filename == "" {
		return kind
	}
	if v := mime.FormatMediaType(kind, map[string]string{"filename": filename}); v != "" {
		return v
	}
	return kind
}

// setServeHeaders sets the headers every served file carries. Authed
// responses may hold media only members of a room should see, so shared
// caches must not keep them.
func setServeHeaders(h http.Header, ct, disposition string, authed bool) {
	h.Set("Content-Type", ct)
	h.Set("Content-Disposition", disposition)
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	// Client-Server API, "Content repository" (added in v1.4).
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// The type was chosen by the uploader; the browser must not second-
	// guess it into something executable.
	h.Set("X-Content-Type-Options", "nosniff")
	if authed {
		h.Set("Cache-Control", "private, max-age=86400")
	} else {
		h.Set("Cache-Control", "public, max-age=86400")
	}
}
