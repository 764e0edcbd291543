package difftest

import (
	"io"
	"os"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestMain silences gomatrixserverlib's logger: its KeyRing warns on
// every signature it cannot check, which the signature variants
// provoke on purpose.
func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}
