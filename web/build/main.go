package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

func main() {
	dir := flag.String("dir", "web", "the web client's folder (holding src/, node_modules/ and dist/)")
	dev := flag.Bool("dev", false, "skip minification and add source maps, for debugging in a browser")
	flag.Parse()
	if err := build(*dir, *dev); err != nil {
		fmt.Fprintf(os.Stderr, "web/build: %v\n", err)
		os.Exit(1)
	}
}

func build(dir string, dev bool) error {
	// esbuild reports absolute output paths.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		return fmt.Errorf("%w: run `npm ci` in %s (make web does)", err, dir)
	}
	dist := filepath.Join(dir, "dist")
	assets := filepath.Join(dist, "assets")
	// Old hashed files would pile up (and be embedded) build after build.
	if err := os.RemoveAll(assets); err != nil {
		return err
	}
	opts := api.BuildOptions{
		EntryPoints: []string{filepath.Join(dir, "src", "main.js")},
		Bundle:      true,
		Outdir:      assets,
		EntryNames:  "[name]-[hash]",
		AssetNames:  "[name]-[hash]",
		ChunkNames:  "[name]-[hash]",
		Format:      api.FormatESModule,
		// The two browsers the client promises to work in, a year back.
		Target:   api.ES2022,
		Engines:  []api.Engine{{Name: api.EngineChrome, Version: "120"}, {Name: api.EngineFirefox, Version: "121"}},
		Metafile: true,
		Write:    true,
		LogLevel: api.LogLevelWarning,
		Define:   map[string]string{"process.env.NODE_ENV": `"production"`},
		Loader:   map[string]api.Loader{".svg": api.LoaderFile, ".png": api.LoaderFile},
	}
	if dev {
		opts.Sourcemap = api.SourceMapLinked
	} else {
		opts.MinifyWhitespace, opts.MinifyIdentifiers, opts.MinifySyntax = true, true, true
		opts.LegalComments = api.LegalCommentsLinked
	}
	res := api.Build(opts)
	if len(res.Errors) > 0 {
		msgs := api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage})
		return errors.New(strings.Join(msgs, ""))
	}
	var js, css string
	for _, f := range res.OutputFiles {
		rel, err := filepath.Rel(dist, f.Path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case strings.HasPrefix(filepath.Base(rel), "main-") && strings.HasSuffix(rel, ".js"):
			js = rel
		case strings.HasPrefix(filepath.Base(rel), "main-") && strings.HasSuffix(rel, ".css"):
			css = rel
		}
	}
	if js == "" || css == "" {
		return fmt.Errorf("esbuild wrote no main script or stylesheet (got %d files)", len(res.OutputFiles))
	}
	tmpl, err := os.ReadFile(filepath.Join(dir, "src", "index.html"))
	if err != nil {
		return err
	}
	page := bytes.ReplaceAll(tmpl, []byte("{{script}}"), []byte("/"+js))
	page = bytes.ReplaceAll(page, []byte("{{style}}"), []byte("/"+css))
	if bytes.Contains(page, []byte("{{")) {
		return errors.New("index.html has a placeholder the build does not fill")
	}
	if err := os.WriteFile(filepath.Join(dist, "index.html"), page, 0o644); err != nil {
		return err
	}
	fmt.Printf("web/build: %s, %s (%d files)\n", js, css, len(res.OutputFiles))
	return nil
}
