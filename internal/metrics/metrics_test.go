package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRegistryServesRuntimeMetrics(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	// A second registry must not collide with the first: nothing is global.
	if _, err := NewRegistry(); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{"go_goroutines", "process_open_fds"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
