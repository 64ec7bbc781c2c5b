package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// readOnlyMedia is the Media under a log opened with Options.ReadOnly. It
// lets recovery run unchanged while nothing reaches the log's files:
// segments are mapped copy-on-write (MAP_PRIVATE), so a torn tail that
// recovery zeroes is zeroed only in this process's view; removals and META
// rewrites are remembered in memory and reflected by ReadDir and ReadFile;
// creating a segment is refused. The view is the one a writer's Open would
// produce, which is what verify and dump need to show.
type readOnlyMedia struct {
	inner Media

	mu      sync.Mutex
	removed map[string]bool   // paths recovery removed
	written map[string][]byte // small files recovery replaced
}

func newReadOnlyMedia(inner Media) *readOnlyMedia {
	return &readOnlyMedia{inner: inner, removed: map[string]bool{}, written: map[string][]byte{}}
}

// MkdirAll only checks that dir is an existing directory.
func (m *readOnlyMedia) MkdirAll(dir string, _ fs.FileMode) error {
	entries, err := m.inner.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	for _, e := range entries {
		if e.Name() == metaName || strings.HasSuffix(e.Name(), segSuffix) {
			return nil
		}
	}
	return fmt.Errorf("%s holds no log (no %s and no segment files): %w", dir, metaName, fs.ErrNotExist)
}

// Lock takes a shared lock where the inner Media offers one, so that any
// number of read-only users may look while a writer is refused (and a
// writer's lock refuses them, with ErrLocked). Otherwise it takes the
// exclusive lock.
func (m *readOnlyMedia) Lock(dir string, perm fs.FileMode) (io.Closer, error) {
	if s, ok := m.inner.(interface {
		lockShared(dir string) (io.Closer, error)
	}); ok {
		return s.lockShared(dir)
	}
	return m.inner.Lock(dir, perm)
}

func (m *readOnlyMedia) ReadDir(dir string) ([]fs.DirEntry, error) {
	entries, err := m.inner.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := entries[:0]
	for _, e := range entries {
		if !m.removed[filepath.Join(dir, e.Name())] {
			kept = append(kept, e)
		}
	}
	return kept, nil
}

// errReadOnlyCreate refuses what would need a new segment file.
var errReadOnlyCreate = fmt.Errorf("%w: would create a segment file", ErrReadOnly)

func (m *readOnlyMedia) CreateSegment(string, int64, []byte, fs.FileMode) error {
	return errReadOnlyCreate
}

func (m *readOnlyMedia) Open(path string) (MediaFile, error) {
	m.mu.Lock()
	gone := m.removed[path]
	m.mu.Unlock()
	if gone {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	if p, ok := m.inner.(interface {
		openPrivate(path string) (MediaFile, error)
	}); ok {
		return p.openPrivate(path)
	}
	f, err := m.inner.Open(path)
	if err != nil {
		return nil, err
	}
	return &copiedFile{MediaFile: f}, nil
}

func (m *readOnlyMedia) ReadFile(path string) ([]byte, error) {
	m.mu.Lock()
	b, ok := m.written[path]
	gone := m.removed[path]
	m.mu.Unlock()
	switch {
	case ok:
		return append([]byte(nil), b...), nil
	case gone:
		return nil, &fs.PathError{Op: "read", Path: path, Err: fs.ErrNotExist}
	}
	return m.inner.ReadFile(path)
}

func (m *readOnlyMedia) ReplaceFile(path string, data []byte, _ fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written[path] = append([]byte(nil), data...)
	delete(m.removed, path)
	return nil
}

func (m *readOnlyMedia) Remove(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removed[path] = true
	delete(m.written, path)
	return nil
}

func (m *readOnlyMedia) SyncDir(string) error { return nil }

// Rename is refused: a read-only log does not recycle segments.
func (m *readOnlyMedia) Rename(string, string) error {
	return fmt.Errorf("%w: would rename a file", ErrReadOnly)
}

// copiedFile serves a Media that has no private mapping: Map reads the
// whole file into memory.
type copiedFile struct {
	MediaFile
}

func (f *copiedFile) Map(Persist) (Mapping, error) {
	b := make([]byte, f.Size())
	if n, err := f.ReadAt(b, 0); n != len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("wal: read-only copy: %w", err)
	}
	return &memMapping{mem: b}, nil
}

// memMapping is a private, volatile view: every persistence call is a no-op.
type memMapping struct{ mem []byte }

func (m *memMapping) Bytes() []byte           { return m.mem }
func (m *memMapping) Persist() Persist        { return PersistMsync }
func (m *memMapping) Flush(int, int) int      { return 0 }
func (m *memMapping) StoreNT(int, []byte) int { return 0 }
func (m *memMapping) Fence()                  {}
func (m *memMapping) Sync(int, int) error     { return nil }
func (m *memMapping) Unmap() error            { m.mem = nil; return nil }

// lockShared takes a shared flock on dir/LOCK. A log directory without a
// LOCK file has never been opened by a writer here (a copied log, say): it
// is read without a lock rather than written to.
func (m *osMedia) lockShared(dir string) (io.Closer, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(nil), nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (a writer has the log open)", ErrLocked, path)
		}
		return nil, fmt.Errorf("wal: lock %s: %w", path, err)
	}
	return f, nil
}

// openPrivate opens a segment file read-only; its Map is copy-on-write.
func (m *osMedia) openPrivate(path string) (MediaFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &osFile{File: f, size: st.Size(), hw: m.hw, private: true}, nil
}
