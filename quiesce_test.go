package wal

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// Appends take no mapping lock: Close and the truncations wait for the
// appends in flight (quiesce) instead. These tests hold one append between
// its reservation and its commit, by calling the two halves of the append
// path directly, and check that Close and TruncateBack wait for it, that
// new appends wait for them, and that the held append lands durably.

// holdAppend reserves data's record and returns a function that writes and
// commits it, as the rest of Append would.
func holdAppend(t *testing.T, l *Log, data []byte) (index uint64, finish func() error) {
	t.Helper()
	seg, off, first, rs, err := l.reserve(recSize(len(data)), data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return first, func() error {
		flushed, werr := l.writeRecords(seg, off, first, data, nil)
		return l.commit(rs, first, flushed, werr)
	}
}

// notDone fails the test if ch delivers within a short wait: the call
// behind it should still be waiting.
func notDone(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned (%v) while an append was in flight", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func quiesceLog(t *testing.T) (string, *Log) {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
	dir := t.TempDir()
	l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
	if err != nil {
		t.Fatal(err)
	}
	return dir, l
}

func TestCloseWaitsForAppendInFlight(t *testing.T) {
	dir, l := quiesceLog(t)
	if _, err := l.Append([]byte("before")); err != nil {
		t.Fatal(err)
	}
	held := []byte("in flight while Close starts")
	idx, finish := holdAppend(t, l, held)
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	notDone(t, closed, "Close")
	if _, err := l.Append([]byte("after Close began")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append while Close waits = %v, want ErrClosed", err)
	}
	if err := finish(); err != nil {
		t.Fatalf("the append in flight failed: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got, err := l.Read(idx); err != nil || !bytes.Equal(got, held) {
		t.Fatalf("the append in flight at Close: Read(%d) = %q, %v; want %q", idx, got, err, held)
	}
	if l.LastIndex() != idx {
		t.Fatalf("LastIndex = %d after reopen, want %d", l.LastIndex(), idx)
	}
}

func TestTruncateBackWaitsForAppendInFlight(t *testing.T) {
	_, l := quiesceLog(t)
	defer l.Close()
	for i := 0; i < 3; i++ {
		if _, err := l.Append([]byte("kept or cut")); err != nil {
			t.Fatal(err)
		}
	}
	idx, finish := holdAppend(t, l, []byte("in flight"))
	truncated := make(chan error, 1)
	go func() { truncated <- l.TruncateBack(1) }()
	notDone(t, truncated, "TruncateBack")
	// A new append waits too: it may not slip in while TruncateBack waits.
	appended := make(chan error, 1)
	var newIdx uint64
	go func() {
		var err error
		newIdx, err = l.Append([]byte("after the truncation"))
		appended <- err
	}()
	notDone(t, appended, "an Append queued behind TruncateBack")
	if err := finish(); err != nil {
		t.Fatalf("the append in flight failed: %v", err)
	}
	if err := <-truncated; err != nil {
		t.Fatal(err)
	}
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if idx != 4 || newIdx != 2 {
		t.Fatalf("held append got %d, the queued one %d; want 4 (then cut) and 2", idx, newIdx)
	}
	if got, err := l.Read(2); err != nil || string(got) != "after the truncation" {
		t.Fatalf("Read(2) = %q, %v", got, err)
	}
	if l.LastIndex() != 2 {
		t.Fatalf("LastIndex = %d, want 2", l.LastIndex())
	}
}
