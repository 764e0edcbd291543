//go:build !goolm

package signalling_test

import "testing"

// TestMautrixNeedsGoolm stands in for the mautrix-go tests when the build
// lacks the goolm tag: without it mautrix-go's crypto needs libolm through
// cgo, so those tests are left out of the build; this one fails instead,
// so a run without the tag cannot pass by silently skipping them. The
// Makefile sets the tag (GOFLAGS=-tags=goolm).
func TestMautrixNeedsGoolm(t *testing.T) {
	t.Fatal("the mautrix-go client tests need -tags goolm: run make test, or go test -tags goolm")
}
