package wal

import (
	"errors"
	"testing"
	"time"
)

var errMediaPanic = errors.New("media panic")

// within runs f and fails the test if it does not return in time: after an
// append panicked, nothing may wait for it for ever.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still waiting 5 s after an append panicked", what)
		return nil
	}
}

// An append whose Media panics between reservation and commit: the panic
// reaches the caller, and the log fails instead of waiting for ever for
// the append's commit. Later appends and truncations get ErrFailed, Close
// returns, and the records acknowledged before are there after a reopen.
func TestAppendPanicFailsLog(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	dir := t.TempDir()
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	// The first Fence after arming panics: user code (a Media) panicking
	// in the middle of an append, after its reservation, before its commit.
	m := &fenceFailMedia{Media: &osMedia{hw: &h}, failAt: 1, panicWith: errMediaPanic}
	opts := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, Media: m}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := l.Append([]byte("acknowledged"))
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.armed = true
	m.mu.Unlock()
	var got any
	func() {
		defer func() { got = recover() }()
		l.Append([]byte("panics"))
	}()
	if got != errMediaPanic {
		t.Fatalf("Append through a panicking Media: recovered %v, want the Media's panic", got)
	}
	m.mu.Lock()
	m.armed = false
	m.mu.Unlock()
	if err := within(t, "Append", func() error { _, err := l.Append([]byte("after")); return err }); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after a panicked append = %v, want ErrFailed", err)
	}
	if err := within(t, "TruncateBack", func() error { return l.TruncateBack(0) }); !errors.Is(err, ErrFailed) {
		t.Fatalf("TruncateBack after a panicked append = %v, want ErrFailed", err)
	}
	if err := within(t, "Close", l.Close); err != nil {
		t.Fatalf("Close after a panicked append = %v", err)
	}
	l, err = Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rec, err := l.Read(idx); err != nil || string(rec) != "acknowledged" {
		t.Fatalf("Read(%d) after reopen = %q, %v", idx, rec, err)
	}
}
