package wal

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// parentSyncMedia is an r5RootMedia (on the host's own paths) whose sync of
// one directory fails while fail is set, and which records, at each sync of
// that directory, whether the log's META existed yet.
type parentSyncMedia struct {
	*r5RootMedia
	watch, meta string

	mu        sync.Mutex
	fail      bool
	metaFirst []bool // per sync of watch: META already existed
}

var errInjectedSync = errors.New("injected directory sync failure")

func (m *parentSyncMedia) SyncDir(dir string) error {
	if filepath.Clean(dir) == m.watch {
		_, err := os.Stat(m.meta)
		m.mu.Lock()
		m.metaFirst = append(m.metaFirst, err == nil)
		fail := m.fail
		m.mu.Unlock()
		if fail {
			return errInjectedSync
		}
	}
	return m.r5RootMedia.SyncDir(dir)
}

// TestNewLogSyncsItsDirectoryEntry: a log created in a directory that
// already exists (a caller's os.MkdirAll, which syncs nothing) must still
// make that directory's entry durable before its first record is, or a
// power failure can take the directory and every acknowledged record with
// it. The sync comes before META is written, so an Open that fails on it
// leaves a directory the next Open again treats as new, and syncs again.
func TestNewLogSyncsItsDirectoryEntry(t *testing.T) {
	rtEnv(t)
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	parent := rtDir(t)
	dir := filepath.Join(parent, "log")
	if err := os.Mkdir(dir, 0o700); err != nil { // the caller's, never synced
		t.Fatal(err)
	}
	m := &parentSyncMedia{
		r5RootMedia: &r5RootMedia{inner: &osMedia{hw: &h}, synced: map[string]bool{}},
		watch:       filepath.Clean(parent),
		meta:        filepath.Join(dir, metaName),
		fail:        true,
	}
	o := rtOpts(false)
	o.Media = m

	if l, err := Open(dir, o); !errors.Is(err, errInjectedSync) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("Open with the parent's sync failing = %v, want the injected failure", err)
	}
	if _, err := os.Stat(m.meta); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed Open left META behind (stat: %v): the next Open would not redo the sync", err)
	}

	m.mu.Lock()
	m.fail = false
	m.mu.Unlock()
	l := rtOpen(t, dir, o)
	idx, err := l.Append([]byte("acknowledged"))
	if err != nil {
		t.Fatal(err)
	}
	rtClose(t, l)

	m.mu.Lock()
	got := append([]bool(nil), m.metaFirst...)
	m.mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("the log directory's parent was synced %d times over two Opens of a new log, want 2 (one each)", len(got))
	}
	for i, existed := range got {
		if existed {
			t.Errorf("sync %d of the parent came after META was written: a failure there would not be retried", i+1)
		}
	}

	// A log with records is not new: reopening it syncs no parent.
	l = rtOpen(t, dir, o)
	if rec, err := l.Read(idx); err != nil || string(rec) != "acknowledged" {
		t.Fatalf("Read(%d) = %q, %v", idx, rec, err)
	}
	rtClose(t, l)
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.metaFirst) != 2 {
		t.Errorf("reopening a log with records synced its parent directory (%d syncs in all, want 2)", len(m.metaFirst))
	}
}

// TestNewLogInWorkingDirSyncsParent: a log opened as "." lives in the
// working directory, whose entry is in "..", not in "." (filepath.Dir(".")
// is ".").
func TestNewLogInWorkingDirSyncsParent(t *testing.T) {
	rtEnv(t)
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(rtDir(t), "log")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	m := &r5RootMedia{inner: &osMedia{hw: &h}, synced: map[string]bool{}}
	o := rtOpts(false)
	o.Media = m
	l := rtOpen(t, ".", o)
	if _, err := l.Append([]byte("acknowledged")); err != nil {
		t.Fatal(err)
	}
	rtClose(t, l)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced[".."] {
		t.Errorf("a new log in \".\" never synced \"..\", where its directory's entry is (synced: %v)", m.synced)
	}
}
