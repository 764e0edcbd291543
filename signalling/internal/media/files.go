package media

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// errTooLarge is returned by ingest when the content exceeds its limit.
var errTooLarge = errors.New("media: content too large")

// readError wraps a failure to read the content being stored (the client
// went away, or sent a broken body), as opposed to a failure of our disk.
type readError struct{ err error }

func (e *readError) Error() string { return "media: read content: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// fileStore keeps files under root, content-addressed by SHA-256. Every
// file is written in tmp and renamed into place once synced, so a path
// that exists always holds a complete file.
type fileStore struct {
	root string
}

func openFileStore(root string) (*fileStore, error) {
	s := &fileStore{root: root}
	for _, d := range []string{"content", "thumbnails", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("media: create %s: %w", d, err)
		}
	}
	// Whatever is in tmp was being written when a previous run stopped:
	// nothing refers to it.
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("media: read tmp: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return nil, fmt.Errorf("media: clean tmp: %w", err)
		}
	}
	return s, nil
}

func (s *fileStore) tmpDir() string { return filepath.Join(s.root, "tmp") }

// shard spreads files over 65536 folders by the first two bytes of their
// hash, so no folder grows huge.
func shard(hash string) string { return filepath.Join(hash[0:2], hash[2:4]) }

// contentPath is where the content with the given hex SHA-256 lives.
func (s *fileStore) contentPath(hash string) string {
	return filepath.Join(s.root, "content", shard(hash), hash)
}

// thumbnailPath is where a thumbnail of the content with the given hash
// is cached; variant names the size and method.
func (s *fileStore) thumbnailPath(hash, variant string) string {
	return filepath.Join(s.root, "thumbnails", shard(hash), hash+"-"+variant)
}

// ingest stores what r yields, at most max bytes, and returns its hex
// SHA-256 and size. It fails with errTooLarge past max and with a
// *readError when r fails; either way nothing is left on disk. When the
// same content is already stored, the new copy is dropped (dedupe).
func (s *fileStore) ingest(r io.Reader, max int64) (hash string, size int64, err error) {
	f, err := os.CreateTemp(s.tmpDir(), "upload-*")
	if err != nil {
		return "", 0, fmt.Errorf("media: create temp file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), &sourceReader{r: io.LimitReader(r, max+1)})
	if err != nil {
		var re *readError
		if errors.As(err, &re) {
			return "", 0, err
		}
		return "", 0, fmt.Errorf("media: write temp file: %w", err)
	}
	if size > max {
		return "", 0, errTooLarge
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("media: sync temp file: %w", err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return "", 0, fmt.Errorf("media: close temp file: %w", err)
	}
	f = nil
	hash = hex.EncodeToString(h.Sum(nil))
	if err := s.place(tmp, s.contentPath(hash)); err != nil {
		return "", 0, err
	}
	return hash, size, nil
}

// place renames the complete, synced file tmp to dst, unless dst already
// exists: the names are content hashes (or derived from them), so an
// existing dst holds the same bytes, and the copy in tmp is dropped.
func (s *fileStore) place(tmp, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return os.Remove(tmp)
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("media: create folder: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("media: move file into place: %w", err)
	}
	// The rename is durable only once the folder is synced.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("media: open folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("media: sync folder: %w", err)
	}
	return nil
}

// writeFile stores b at dst through tmp (see place).
func (s *fileStore) writeFile(dst string, b []byte) (err error) {
	f, err := os.CreateTemp(s.tmpDir(), "thumb-*")
	if err != nil {
		return fmt.Errorf("media: create temp file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.place(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("media: write %s: %w", filepath.Base(dst), err)
	}
	return nil
}

// sourceReader marks errors from the reader it wraps as *readError, to
// tell them from errors writing the temp file.
type sourceReader struct{ r io.Reader }

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err: err}
	}
	return n, err
}
