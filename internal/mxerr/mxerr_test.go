package mxerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestMatrixError(t *testing.T) {
	tests := []struct {
		name       string
		err        *MatrixError
		wantStatus int
		wantBody   string
		wantString string
	}{
		{"forbidden", Forbidden("no"), 403, `{"errcode":"M_FORBIDDEN","error":"no"}`, "M_FORBIDDEN: no"},
		{"zero status defaults to 500", &MatrixError{Code: "M_X", Msg: "m"}, 500, `{"errcode":"M_X","error":"m"}`, "M_X: m"},
		{"empty message still has both keys", New(400, CodeBadJSON, ""), 400, `{"errcode":"M_BAD_JSON","error":""}`, "M_BAD_JSON: "},
		{"unrecognized 404", Unrecognized(404), 404, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`, "M_UNRECOGNIZED: Unrecognized request"},
		{"unrecognized other status is 404", Unrecognized(418), 404, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`, "M_UNRECOGNIZED: Unrecognized request"},
		{"unknown hides detail", Unknown(), 500, `{"errcode":"M_UNKNOWN","error":"Internal server error"}`, "M_UNKNOWN: Internal server error"},
		{"newf", Newf(http.StatusNotFound, CodeNotFound, "room %s", "!a:b"), 404, `{"errcode":"M_NOT_FOUND","error":"room !a:b"}`, "M_NOT_FOUND: room !a:b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.HTTPStatus(); got != tt.wantStatus {
				t.Errorf("HTTPStatus() = %d, want %d", got, tt.wantStatus)
			}
			b, err := json.Marshal(tt.err)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.wantBody {
				t.Errorf("body = %s, want %s", b, tt.wantBody)
			}
			if got := tt.err.Error(); got != tt.wantString {
				t.Errorf("Error() = %q, want %q", got, tt.wantString)
			}
		})
	}
}

func TestMatrixErrorUnwraps(t *testing.T) {
	wrapped := fmt.Errorf("loading room: %w", NotFound("no such room"))
	var me *MatrixError
	if !errors.As(wrapped, &me) || me.Code != CodeNotFound {
		t.Fatalf("errors.As did not find the MatrixError in %v", wrapped)
	}
}
