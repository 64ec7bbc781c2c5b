package wal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// r5RootMedia is a Media with a namespace of its own: every path the log
// gives it lives under root on the host (as a simulator's or a remote
// store's paths do not live on the host's file system at all). It records
// the directories it created and the directories it synced.
type r5RootMedia struct {
	inner   Media
	root    string
	mu      sync.Mutex
	created []string
	synced  map[string]bool
}

func (m *r5RootMedia) p(path string) string { return filepath.Join(m.root, path) }

func (m *r5RootMedia) MkdirAll(dir string, perm fs.FileMode) error {
	m.mu.Lock()
	for d := filepath.Clean(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(m.p(d)); err == nil {
			break
		}
		m.created = append(m.created, d)
	}
	m.mu.Unlock()
	return m.inner.MkdirAll(m.p(dir), perm)
}
func (m *r5RootMedia) Lock(dir string, perm fs.FileMode) (io.Closer, error) {
	return m.inner.Lock(m.p(dir), perm)
}
func (m *r5RootMedia) ReadDir(dir string) ([]fs.DirEntry, error) { return m.inner.ReadDir(m.p(dir)) }
func (m *r5RootMedia) CreateSegment(path string, size int64, header []byte, perm fs.FileMode) error {
	return m.inner.CreateSegment(m.p(path), size, header, perm)
}
func (m *r5RootMedia) Open(path string) (MediaFile, error)  { return m.inner.Open(m.p(path)) }
func (m *r5RootMedia) ReadFile(path string) ([]byte, error) { return m.inner.ReadFile(m.p(path)) }
func (m *r5RootMedia) Remove(path string) error             { return m.inner.Remove(m.p(path)) }
func (m *r5RootMedia) Rename(oldpath, newpath string) error {
	return m.inner.Rename(m.p(oldpath), m.p(newpath))
}
func (m *r5RootMedia) ReplaceFile(path string, data []byte, perm fs.FileMode) error {
	return m.inner.ReplaceFile(m.p(path), data, perm)
}
func (m *r5RootMedia) SyncDir(dir string) error {
	m.mu.Lock()
	m.synced[filepath.Clean(dir)] = true
	m.mu.Unlock()
	return m.inner.SyncDir(m.p(dir))
}

// TestReview5MkdirDurableAsksTheMedia: Open must sync the parent of every
// directory it creates (cfb4a2f), and ask the Media which are missing.
// mkdirDurable once asked the host (os.Stat), so with a Media whose paths
// are not the host's (Options.Media: the fuzz simulator, or any other) it
// synced the wrong set: here the log directory names a path that exists on
// the host (so nothing was synced at all) but not in the Media, which
// creates three directories.
func TestReview5MkdirDurableAsksTheMedia(t *testing.T) {
	rtEnv(t)
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	root := rtDir(t)
	hostDir := t.TempDir() // exists on the host, not under root
	m := &r5RootMedia{inner: &osMedia{hw: &h}, root: root, synced: map[string]bool{}}
	o := rtOpts(false)
	o.Media = m
	l := rtOpen(t, hostDir, o)
	if _, err := l.Append([]byte("acknowledged")); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.created) == 0 {
		t.Fatal("setup: the Media created no directory")
	}
	for _, d := range m.created {
		if p := filepath.Dir(d); !m.synced[p] {
			t.Errorf("Open created %s in the Media but never synced its parent %s", d, p)
		}
	}
}

// TestReview5ClosedReadOnlyAppend: d6b9c84 made an append to a closed log
// say ErrClosed even when it is also too large, "while every other call
// says ErrClosed" (Close: "Later calls return ErrClosed"). The read-only
// check came first still: Append and AppendBatch on a closed read-only log
// said ErrReadOnly, where TruncateFront, TruncateBack, Read and Tail say
// ErrClosed.
func TestReview5ClosedReadOnlyAppend(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	l := rtOpen(t, dir, rtOpts(false))
	if _, err := l.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rtClose(t, l)
	o := rtOpts(false)
	o.ReadOnly = true
	ro, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ro.TruncateFront(5); !errors.Is(err, ErrClosed) {
		t.Fatalf("setup: TruncateFront after Close = %v, want ErrClosed", err)
	}
	if _, err := ro.Read(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("setup: Read after Close = %v, want ErrClosed", err)
	}
	if _, err := ro.Append([]byte("y")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append on a closed read-only log = %v, want ErrClosed", err)
	}
	if _, err := ro.AppendBatch(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("empty AppendBatch on a closed read-only log = %v, want ErrClosed", err)
	}
}
