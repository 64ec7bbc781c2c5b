package wal

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

var errMediaPanic = errors.New("media panic")

// openArmed opens dir with o (whose Media is m), appends "acknowledged",
// and then arms m: the next Fence fails, or panics, as m says. It returns
// the log and the acknowledged record's index.
func openArmed(t *testing.T, dir string, o *Options, m *fenceFailMedia) (*Log, uint64) {
	t.Helper()
	l, err := Open(dir, o)
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
	return l, idx
}

// checkAcked reopens dir and checks that index idx holds "acknowledged".
func checkAcked(t *testing.T, dir string, idx uint64) {
	t.Helper()
	l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rec, err := l.Read(idx); err != nil || string(rec) != "acknowledged" {
		t.Fatalf("Read(%d) after reopen = %q, %v", idx, rec, err)
	}
}

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
	l, idx := openArmed(t, dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, Media: m}, m)
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
	checkAcked(t, dir, idx)
}

// panicHandler is a slog.Handler that panics on every record.
type panicHandler struct{}

var errHandlerPanic = errors.New("the log handler panics")

func (panicHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (panicHandler) Handle(context.Context, slog.Record) error { panic(errHandlerPanic) }
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h panicHandler) WithGroup(string) slog.Handler           { return h }

// A Logger whose handler panics loses its messages but neither leaves the
// log locked nor crashes the caller: a failed flush (logged with the
// log's lock held) still fails the append with ErrFailed and lets every
// later call return, and a torn tail dropped by recovery (logged during
// Open) still opens.
func TestPanickingLogger(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(panicHandler{})
	noPanic := func(what string, f func() error) (err error) {
		t.Helper()
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("%s panicked: %v", what, p)
			}
		}()
		return within(t, what, f)
	}

	t.Run("failure", func(t *testing.T) {
		dir := t.TempDir()
		m := &fenceFailMedia{Media: &osMedia{hw: &h}, failAt: 1}
		l, idx := openArmed(t, dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, Media: m, Logger: logger}, m)
		if err := noPanic("Append meeting a failed flush", func() error { _, err := l.Append([]byte("fails")); return err }); !errors.Is(err, ErrFailed) || !errors.Is(err, errInjectedFence) {
			t.Fatalf("Append meeting a failed flush = %v, want ErrFailed wrapping the flush error", err)
		}
		if err := noPanic("Append after", func() error { _, err := l.Append([]byte("after")); return err }); !errors.Is(err, ErrFailed) {
			t.Fatalf("Append after the failure = %v, want ErrFailed", err)
		}
		if err := noPanic("Stats", func() error { l.Stats(); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := noPanic("Close", l.Close); err != nil {
			t.Fatalf("Close after the failure = %v", err)
		}
		checkAcked(t, dir, idx)
	})

	t.Run("torn tail", func(t *testing.T) {
		dir := t.TempDir()
		o := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush}
		l, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := l.Append(bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		seg := l.segPath(1)
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		data[segHeaderSize+4*recSize(100)+recHeaderSize+50] ^= 1 // record 5's payload never made it
		if err := os.WriteFile(seg, data, 0o600); err != nil {
			t.Fatal(err)
		}
		o.Logger = logger
		if err := noPanic("Open over a torn tail", func() error {
			l, err = Open(dir, o)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if rep := l.Recovery(); !rep.TornTail || rep.Records != 4 {
			t.Fatalf("Recovery over a torn tail = %+v, want TornTail and 4 records", rep)
		}
	})
}

// An append whose goroutine exits in the middle (runtime.Goexit from its
// Media, as t.FailNow does; recover sees nothing) fails the log like a
// panic: later appends get ErrFailed instead of waiting for its turn for
// ever, and Close returns.
func TestAppendGoexitFailsLog(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	var armed atomic.Bool
	m := &fenceFailMedia{Media: &osMedia{hw: &h}, before: func() {
		if armed.CompareAndSwap(true, false) {
			runtime.Goexit()
		}
	}}
	l, err := Open(t.TempDir(), &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, Media: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append([]byte("acknowledged")); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		l.Append([]byte("exits"))
		t.Error("Append returned through a Media that calls runtime.Goexit")
	}()
	<-exited
	if err := within(t, "Append", func() error { _, err := l.Append([]byte("after")); return err }); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after an append's goroutine exited = %v, want ErrFailed", err)
	}
	if err := within(t, "Close", l.Close); err != nil {
		t.Fatalf("Close = %v", err)
	}
}
