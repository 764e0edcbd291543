package layout

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/plexus-chat/plexus"

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	Deps       []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// forbidden lists, per package tree, import prefixes it must never depend
// on, directly or not (DESIGN.md "Components"; STYLE.md "Layout").
var forbidden = map[string][]string{
	module + "/rooms": {
		module + "/signalling", module + "/federation", module + "/sfu",
		module + "/turn", module + "/web", module + "/cmd", "github.com/pion/",
	},
	module + "/sfu": {
		module + "/rooms", module + "/signalling", module + "/federation",
		module + "/turn", module + "/web", module + "/cmd", "maunium.net/", "github.com/matrix-org/",
	},
	module + "/turn": {
		module + "/rooms", module + "/signalling", module + "/federation",
		module + "/sfu", module + "/web", module + "/cmd",
	},
	// The web client is a client like any other: it serves files and
	// reaches the server only through its public APIs, from the browser.
	module + "/web": {
		module + "/rooms", module + "/signalling", module + "/federation",
		module + "/sfu", module + "/turn", module + "/cmd",
	},
	module + "/internal": {
		module + "/rooms", module + "/signalling", module + "/federation",
		module + "/sfu", module + "/turn", module + "/web", module + "/cmd",
	},
}

func TestImportLayering(t *testing.T) {
	for _, p := range listPackages(t) {
		for tree, bans := range forbidden {
			if p.ImportPath != tree && !strings.HasPrefix(p.ImportPath, tree+"/") {
				continue
			}
			for _, d := range p.Deps {
				for _, b := range bans {
					if d == b || strings.HasPrefix(d, b) && (strings.HasSuffix(b, "/") || strings.HasPrefix(d, b+"/")) {
						t.Errorf("%s depends on %s, which the layering forbids", p.ImportPath, d)
					}
				}
			}
		}
	}
}

func TestEveryPackageHasDoc(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join(p.Dir, "doc.go")); err != nil {
			t.Errorf("package %s has no doc.go", p.ImportPath)
		}
	}
}

// The gomatrixserverlib module is an independent implementation used only
// to check ours; no non-test code may import it.
func TestGomatrixserverlibOnlyInTests(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "github.com/matrix-org/gomatrixserverlib") {
				t.Errorf("%s (non-test code) depends on %s", p.ImportPath, d)
			}
		}
	}
}
