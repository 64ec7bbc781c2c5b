package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
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
	removed map[string]bool        // paths recovery removed
	written map[string][]byte      // small files recovery replaced
	created map[string]*memSegment // segments recovery created, in memory only
}

func newReadOnlyMedia(inner Media) *readOnlyMedia {
	return &readOnlyMedia{inner: inner, removed: map[string]bool{}, written: map[string][]byte{}, created: map[string]*memSegment{}}
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
		p := filepath.Join(dir, e.Name())
		if !m.removed[p] && m.created[p] == nil {
			kept = append(kept, e)
		}
	}
	for p := range m.created {
		if filepath.Dir(p) == dir {
			kept = append(kept, memEntry(filepath.Base(p)))
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Name() < kept[j].Name() })
	return kept, nil
}

// CreateSegment makes the segment in memory only: recovery creates one
// where a writer's Open would (a log emptied by an interrupted truncation,
// say), and the read-only view must show the same log.
func (m *readOnlyMedia) CreateSegment(path string, size int64, header []byte, _ fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.created[path] = &memSegment{size: size, header: append([]byte(nil), header...)}
	delete(m.removed, path)
	return nil
}

// memSegment is a segment file that exists only in a read-only view.
type memSegment struct {
	size   int64
	header []byte
}

func (v *memSegment) Size() int64  { return v.size }
func (v *memSegment) Close() error { return nil }

func (v *memSegment) ReadAt(p []byte, off int64) (int, error) {
	if off >= v.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), v.size-off))
	clear(p[:n])
	if off < int64(len(v.header)) {
		copy(p[:n], v.header[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (v *memSegment) Map(Persist) (Mapping, error) {
	b := make([]byte, v.size)
	copy(b, v.header)
	return &memMapping{mem: b}, nil
}

type memEntry string

func (e memEntry) Name() string               { return string(e) }
func (e memEntry) IsDir() bool                { return false }
func (e memEntry) Type() fs.FileMode          { return 0 }
func (e memEntry) Info() (fs.FileInfo, error) { return nil, fmt.Errorf("wal: %s: in memory only", e) }

func (m *readOnlyMedia) Open(path string) (MediaFile, error) {
	m.mu.Lock()
	gone, v := m.removed[path], m.created[path]
	m.mu.Unlock()
	if v != nil {
		return v, nil
	}
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
	delete(m.created, path)
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
func (m *memMapping) Fence() error            { return nil }
func (m *memMapping) Sync(int, int) error     { return nil }
func (m *memMapping) Unmap() error            { m.mem = nil; return nil }

// lockShared takes a shared flock on the directory itself, which every
// writer holds exclusively besides LOCK (see Lock): it needs no file to
// exist, so a copied log without LOCK is locked just the same.
func (m *osMedia) lockShared(dir string) (io.Closer, error) {
	return flockFile(dir, os.O_RDONLY, 0, unix.LOCK_SH, "a writer has the log open")
}

// openPrivate opens a segment file read-only; its Map is copy-on-write.
func (m *osMedia) openPrivate(path string) (MediaFile, error) {
	f, err := m.open(path, true)
	if err != nil {
		return nil, err
	}
	return f, nil
}
