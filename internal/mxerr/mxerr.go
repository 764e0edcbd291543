package mxerr

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Error codes from the Client-Server API, "Common error codes". Only the
// codes that any endpoint may return are listed here; endpoint-specific codes
// ("Other error codes") are added by the package that owns the endpoint, or
// here once two packages need the same one.
const (
	CodeBadJSON               = "M_BAD_JSON"
	CodeBadState              = "M_BAD_STATE"
	CodeExclusive             = "M_EXCLUSIVE"
	CodeGuestAccessForbidden  = "M_GUEST_ACCESS_FORBIDDEN"
	CodeIncompatibleVersion   = "M_INCOMPATIBLE_ROOM_VERSION"
	CodeInvalidParam          = "M_INVALID_PARAM"
	CodeInvalidRoomState      = "M_INVALID_ROOM_STATE"
	CodeInvalidUsername       = "M_INVALID_USERNAME"
	CodeMissingParam          = "M_MISSING_PARAM"
	CodeRoomInUse             = "M_ROOM_IN_USE"
	CodeTooLarge              = "M_TOO_LARGE"
	CodeUnsupportedVersion    = "M_UNSUPPORTED_ROOM_VERSION"
	CodeUserDeactivated       = "M_USER_DEACTIVATED"
	CodeUserInUse             = "M_USER_IN_USE"
	CodeWeakPassword          = "M_WEAK_PASSWORD"
	CodeForbidden             = "M_FORBIDDEN"
	CodeLimitExceeded         = "M_LIMIT_EXCEEDED"
	CodeMissingToken          = "M_MISSING_TOKEN"
	CodeNotFound              = "M_NOT_FOUND"
	CodeNotJSON               = "M_NOT_JSON"
	CodeResourceLimitExceeded = "M_RESOURCE_LIMIT_EXCEEDED"
	CodeUnknown               = "M_UNKNOWN"
	CodeUnknownDevice         = "M_UNKNOWN_DEVICE"
	CodeUnknownToken          = "M_UNKNOWN_TOKEN"
	CodeUnauthorized          = "M_UNAUTHORIZED"
	CodeUnrecognized          = "M_UNRECOGNIZED"
	CodeUserLimitExceeded     = "M_USER_LIMIT_EXCEEDED"
	CodeUserLocked            = "M_USER_LOCKED"
	CodeUserSuspended         = "M_USER_SUSPENDED"
)

// MatrixError is a failure with a Matrix error code, a human-readable
// message and the HTTP status it is answered with.
type MatrixError struct {
	// Code is the errcode, e.g. M_FORBIDDEN.
	Code string
	// Msg is the human-readable "error" string. It is shown to users and
	// other servers, so it must not carry internal details.
	Msg string
	// Status is the HTTP status code; 0 means 500.
	Status int
	// Extra holds further fields of the body that some errors carry
	// (retry_after_ms for M_LIMIT_EXCEEDED, the flows and session of a
	// user-interactive auth challenge, ...). It never overrides errcode
	// or error.
	Extra map[string]any
}

// With returns a copy of e whose body also carries key: value.
func (e *MatrixError) With(key string, value any) *MatrixError {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

// New returns a MatrixError with the given status, code and message.
func New(status int, code, msg string) *MatrixError {
	return &MatrixError{Code: code, Msg: msg, Status: status}
}

// Newf is New with a formatted message.
func Newf(status int, code, format string, args ...any) *MatrixError {
	return &MatrixError{Code: code, Msg: fmt.Sprintf(format, args...), Status: status}
}

// Error implements error.
func (e *MatrixError) Error() string {
	return e.Code + ": " + e.Msg
}

// HTTPStatus is Status, defaulting to 500 when unset so that a zero value
// never produces an invalid response.
func (e *MatrixError) HTTPStatus() int {
	if e.Status == 0 {
		return http.StatusInternalServerError
	}
	return e.Status
}

// body is the wire form; the spec requires both keys to always be present.
type body struct {
	Code string `json:"errcode"`
	Msg  string `json:"error"`
}

// MarshalJSON writes the standard error body {"errcode":..., "error":...}.
func (e *MatrixError) MarshalJSON() ([]byte, error) {
	if len(e.Extra) == 0 {
		return json.Marshal(body{Code: e.Code, Msg: e.Msg})
	}
	m := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		m[k] = v
	}
	m["errcode"], m["error"] = e.Code, e.Msg
	return json.Marshal(m)
}

// LimitExceeded is 429 M_LIMIT_EXCEEDED with retry_after_ms.
func LimitExceeded(retryAfterMS int64) *MatrixError {
	return New(http.StatusTooManyRequests, CodeLimitExceeded, "Too many requests").With("retry_after_ms", retryAfterMS)
}

// InvalidParam is 400 M_INVALID_PARAM.
func InvalidParam(msg string) *MatrixError { return New(http.StatusBadRequest, CodeInvalidParam, msg) }

// MissingParam is 400 M_MISSING_PARAM.
func MissingParam(msg string) *MatrixError { return New(http.StatusBadRequest, CodeMissingParam, msg) }

// UnknownToken is 401 M_UNKNOWN_TOKEN (Client-Server API, "Using access
// tokens"): the token is not, or no longer, valid.
func UnknownToken(msg string) *MatrixError {
	return New(http.StatusUnauthorized, CodeUnknownToken, msg)
}

// MissingToken is 401 M_MISSING_TOKEN.
func MissingToken() *MatrixError {
	return New(http.StatusUnauthorized, CodeMissingToken, "Missing access token")
}

// TooLarge is 413 M_TOO_LARGE.
func TooLarge(msg string) *MatrixError {
	return New(http.StatusRequestEntityTooLarge, CodeTooLarge, msg)
}

// NotFound is 404 M_NOT_FOUND.
func NotFound(msg string) *MatrixError { return New(http.StatusNotFound, CodeNotFound, msg) }

// Forbidden is 403 M_FORBIDDEN.
func Forbidden(msg string) *MatrixError { return New(http.StatusForbidden, CodeForbidden, msg) }

// BadJSON is 400 M_BAD_JSON: the body is JSON but not of the expected shape.
func BadJSON(msg string) *MatrixError { return New(http.StatusBadRequest, CodeBadJSON, msg) }

// NotJSON is 400 M_NOT_JSON: the body is not JSON at all.
func NotJSON(msg string) *MatrixError { return New(http.StatusBadRequest, CodeNotJSON, msg) }

// Unknown is 500 M_UNKNOWN, the answer to an internal failure. Its message is
// fixed so that internal error text never leaks to clients.
func Unknown() *MatrixError {
	return New(http.StatusInternalServerError, CodeUnknown, "Internal server error")
}

// Unrecognized is M_UNRECOGNIZED with the status the spec pairs it with:
// 404 for an endpoint the server does not implement, 405 for a known endpoint
// approached with the wrong method (Client-Server API, "Common error codes").
func Unrecognized(status int) *MatrixError {
	if status == http.StatusMethodNotAllowed {
		return New(status, CodeUnrecognized, "Unrecognized request: method not allowed on this endpoint")
	}
	return New(http.StatusNotFound, CodeUnrecognized, "Unrecognized request")
}
