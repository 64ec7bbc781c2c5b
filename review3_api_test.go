package wal

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// r3aOpen opens a cache-flush (or msync) log on tmpfs with 1 MiB segments.
func r3aOpen(t *testing.T, p Persist) *Log {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
	l, err := Open(rtDir(t), &Options{SegmentSize: 1 << 20, Persist: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestReview3ApiTailerWokenByFailure: a tailing reader waiting for the next
// record when the log fails (fail-stop) is never told: fail() broadcasts
// l.cond but does not close l.grew, and nothing can make LastIndex advance
// any more. A Next that starts after the failure returns ErrFailed at once.
func TestReview3ApiTailerWokenByFailure(t *testing.T) {
	l := r3aOpen(t, PersistMsync)
	if _, err := l.Append([]byte("one")); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, _, err := l.Tail(2).Next(context.Background(), nil)
		got <- err
	}()
	// Wait until the tailer is parked on l.grew.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		parked := l.grew != nil
		l.mu.Unlock()
		if parked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tailer never waited")
		}
	}
	apiSetHook(l, func() error { return errors.New("injected msync failure") })
	if _, err := l.Append([]byte("two")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append with a failing msync: %v, want ErrFailed", err)
	}
	// A tailer that starts now gets the failure at once...
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, _, err := l.Tail(2).Next(ctx, nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Next after the failure: %v, want ErrFailed", err)
	}
	// ...and so must the one already waiting.
	select {
	case err := <-got:
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("waiting Next across the failure: %v, want ErrFailed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("lost wake-up: a tailer waiting when the log failed never returns (LastIndex can no longer advance)")
	}
}

// TestReview3ApiIndexOverflow: TruncateFront accepts any index, including
// math.MaxUint64. The next Append gets MaxUint64, and l.next wraps to 0:
// the Append after that is given index 0, returns "durable" at once
// (durable >= 0), and LastIndex goes back to 0 below FirstIndex.
func TestReview3ApiIndexOverflow(t *testing.T) {
	l := r3aOpen(t, PersistCacheFlush)
	if err := l.TruncateFront(math.MaxUint64); err != nil {
		t.Logf("TruncateFront(MaxUint64) refused: %v", err)
		return // refusing is fine
	}
	if f, last := l.FirstIndex(), l.LastIndex(); f != math.MaxUint64 || last != math.MaxUint64-1 {
		t.Fatalf("after TruncateFront(MaxUint64): %d..%d", f, last)
	}
	idx, err := l.Append([]byte("last possible"))
	t.Logf("Append: %d, %v", idx, err)
	if err == nil && idx != math.MaxUint64 {
		t.Fatalf("Append after TruncateFront(MaxUint64) = %d, want MaxUint64 or an error", idx)
	}
	idx2, err2 := l.Append([]byte("wrapped"))
	t.Logf("Append: %d, %v; FirstIndex %d LastIndex %d", idx2, err2, l.FirstIndex(), l.LastIndex())
	if err2 == nil {
		t.Fatalf("Append past index MaxUint64 succeeded with index %d (FirstIndex %d, LastIndex %d): the index wrapped", idx2, l.FirstIndex(), l.LastIndex())
	}
	if l.LastIndex() != math.MaxUint64 && err == nil {
		t.Fatalf("LastIndex went from MaxUint64 to %d", l.LastIndex())
	}
}

// TestReview3ApiHugeInFlightBoundOverflow: Options.InFlightBound has a lower
// limit only. With math.MaxInt64 (a natural way to say "no bound"),
// recovery's segHeaderSize+int(s.hdr.bound) (recovery.go:60) wraps
// negative, so a segment whose activation block is damaged while it holds
// records is taken for a never-used spare: its records vanish silently
// instead of Open failing with ErrCorrupt, as it does with the default
// bound (TestRtActivationBlockDamage).
func TestReview3ApiHugeInFlightBoundOverflow(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	for _, bound := range []int64{0, math.MaxInt64} {
		dir := rtDir(t)
		o := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, InFlightBound: bound}
		l, err := Open(dir, o)
		if err != nil {
			t.Fatalf("bound %d: Open: %v", bound, err)
		}
		for i := 0; i < 8; i++ { // 2 segments: 4 records each
			if _, err := l.Append(bytes.Repeat([]byte{byte(i + 1)}, 200_000)); err != nil {
				t.Fatal(err)
			}
		}
		last := l.LastIndex()
		segs := len(l.segs)
		l.Close()
		if segs != 2 {
			t.Fatalf("fixture: %d segments, want 2", segs)
		}
		// Damage the activation block of the last segment, which holds records.
		f, err := os.OpenFile(filepath.Join(dir, segName(2)), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		f.ReadAt(b[:], activationOff)
		b[0] ^= 0x10
		f.WriteAt(b[:], activationOff)
		f.Close()
		l, err = Open(dir, o)
		if err == nil {
			got := l.LastIndex()
			l.Close()
			t.Errorf("InFlightBound %d: Open succeeded with LastIndex %d (was %d): records silently gone; want ErrCorrupt", bound, got, last)
			continue
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("InFlightBound %d: Open: %v, want ErrCorrupt", bound, err)
		}
	}
}

// TestReview3ApiIndexMaxReopen: the one record that does fit below the
// overflow, index MaxUint64, is acknowledged by Append, yet a reopen drops
// it: recovery computes next = first + records = 0 (wrapped), takes
// first > next for an interrupted TruncateFront past the end, and empties
// the log.
func TestReview3ApiIndexMaxReopen(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	dir := rtDir(t)
	o := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush}
	l, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateFront(math.MaxUint64); err != nil {
		l.Close()
		t.Logf("TruncateFront(MaxUint64) refused: %v", err)
		return
	}
	idx, err := l.Append([]byte("acknowledged"))
	l.Close()
	if err != nil {
		t.Logf("Append at MaxUint64 refused: %v", err)
		return
	}
	if idx != math.MaxUint64 {
		t.Fatalf("Append = %d, want MaxUint64", idx)
	}
	l, err = Open(dir, o)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer l.Close()
	rec, err := l.Read(math.MaxUint64)
	if err != nil || string(rec) != "acknowledged" {
		t.Fatalf("after reopen: FirstIndex %d LastIndex %d; Read(MaxUint64) = %q, %v: an acknowledged record is gone (report %+v)",
			l.FirstIndex(), l.LastIndex(), rec, err, l.Recovery().Reasons)
	}
}

// TestReview3ApiPastEndTruncateRace: TruncateFront past the end (resetAt,
// which swaps the active segment under appenders, tailers and iterators)
// has no stress test of its own. Appenders, tailers, iterators, Stats and
// Read run beside it, then Close lands in the middle of everything. Every
// tailer must see rising indexes and no record where a hole is.
func TestReview3ApiPastEndTruncateRace(t *testing.T) {
	for _, p := range []Persist{PersistCacheFlush, PersistMsync} {
		t.Run(p.String(), func(t *testing.T) {
			l := r3aOpen(t, p)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			errc := make(chan error, 32)
			ok := func(err error) bool {
				return err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrClosed)
			}
			for g := 0; g < 2; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						var err error
						if i%4 == 0 {
							_, err = l.AppendBatch([][]byte{{1, 2, 3}, make([]byte, 3000), nil})
						} else {
							_, err = l.Append(make([]byte, 100+i%5000))
						}
						if err != nil {
							if !errors.Is(err, ErrClosed) {
								errc <- err
							}
							return
						}
					}
				}()
			}
			for g := 0; g < 2; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tl := l.Tail(l.FirstIndex())
					var prev uint64
					var buf []byte
					for {
						idx, rec, err := tl.Next(context.Background(), buf)
						if errors.Is(err, ErrNotFound) {
							tl = l.Tail(l.FirstIndex())
							continue
						}
						if err != nil {
							if !errors.Is(err, ErrClosed) {
								errc <- err
							}
							return
						}
						if idx <= prev {
							errc <- errors.New("tailer went backwards")
							return
						}
						prev, buf = idx, rec
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					it := l.Records(l.FirstIndex())
					var prev uint64
					for idx := range it.All() {
						if prev != 0 && idx != prev+1 {
							errc <- errors.New("iterator skipped")
							return
						}
						prev = idx
					}
					if err := it.Err(); !ok(err) {
						errc <- err
						return
					}
					l.Stats()
					if _, err := l.Read(l.LastIndex()); !ok(err) {
						errc <- err
						return
					}
				}
			}()
			deadline := time.Now().Add(700 * time.Millisecond)
			for time.Now().Before(deadline) {
				time.Sleep(3 * time.Millisecond)
				if err := l.TruncateFront(l.LastIndex() + 50); err != nil {
					t.Fatal(err)
				}
				if f := l.FirstIndex(); l.LastIndex()+1 < f {
					t.Fatalf("FirstIndex %d > LastIndex+1 %d", f, l.LastIndex()+1)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			close(stop)
			wg.Wait()
			select {
			case err := <-errc:
				t.Fatal(err)
			default:
			}
		})
	}
}

// TestReview3ApiTailNilContext: Next with a nil context works while a record
// is there, and panics (nil interface method call) as soon as it has to
// wait. The policy is no panic on bad input; context.Background() would
// be the natural reading of nil, or an error.
func TestReview3ApiTailNilContext(t *testing.T) {
	l := r3aOpen(t, PersistCacheFlush)
	if _, err := l.Append([]byte("a")); err != nil {
		t.Fatal(err)
	}
	tl := l.Tail(1)
	//lint:ignore SA1012 the point of the test
	if _, _, err := tl.Next(nil, nil); err != nil { //nolint:staticcheck
		t.Fatalf("Next(nil ctx) with a record ready: %v", err)
	}
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		go func() { time.Sleep(50 * time.Millisecond); l.Append([]byte("b")) }()
		tl.Next(nil, nil) //nolint:staticcheck
	}()
	select {
	case r := <-done:
		if r != nil {
			t.Fatalf("Next(nil ctx) that has to wait panicked: %v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next(nil ctx) never returned")
	}
}

// r3aFailRemove is the OS media with Remove failing on demand.
type r3aFailRemove struct {
	Media
	fail sync.Mutex // held: Remove fails
	on   bool
}

func (m *r3aFailRemove) set(on bool) { m.fail.Lock(); m.on = on; m.fail.Unlock() }
func (m *r3aFailRemove) Remove(path string) error {
	m.fail.Lock()
	on := m.on
	m.fail.Unlock()
	if on {
		return errors.New("injected remove failure")
	}
	return m.Media.Remove(path)
}

// TestReview3ApiPastEndRemoveFailsThenRead: TruncateFront past the end swaps
// l.segs for the new segment in resetAt, then removes the old files; when a
// removal fails, resetAt returns before it updates next, written, durable
// and tail, and truncateFrontPastEnd before it sets first. The log is
// failed (appends refused) but still serves reads of [first, LastIndex]
// from the old numbers, and segFor finds no segment for them: l.segs[-1],
// a panic out of Read (guardFault re-panics what is not a memory fault).
func TestReview3ApiPastEndRemoveFailsThenRead(t *testing.T) {
	r3aFailedTruncation(t, func(l *Log) bool { return l.LastIndex() >= 10 }, []byte("old"),
		"TruncateFront(100)", func(l *Log) error { return l.TruncateFront(100) })
}

// r3aFailedTruncation appends data until full says so, runs truncate while
// every Remove fails, and checks that the failed log still reads without
// panicking.
func r3aFailedTruncation(t *testing.T, full func(*Log) bool, data []byte, what string, truncate func(*Log) error) {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
	m := &r3aFailRemove{Media: r2OSMedia(t)}
	l, err := Open(rtDir(t), &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, Media: m})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for !full(l) {
		if _, err := l.Append(data); err != nil {
			t.Fatal(err)
		}
	}
	m.set(true)
	terr := truncate(l)
	m.set(false)
	t.Logf("%s with failing Remove: %v; FirstIndex %d LastIndex %d", what, terr, l.FirstIndex(), l.LastIndex())
	if terr == nil {
		t.Fatal("expected the injected error")
	}
	r3aNoPanic(t, l)
}

// r3aNoPanic reads the log every way after a failed truncation: none may
// panic or hang. Each call runs in a goroutine of its own with a limit: a
// panic inside borrow leaves l.mu locked, and everything after it would
// hang, the deferred Close too, so l.mu is released at the end.
func r3aNoPanic(t *testing.T, l *Log) {
	t.Helper()
	check := func(name string, f func()) bool {
		t.Helper()
		done := make(chan any, 1)
		go func() {
			defer func() { done <- recover() }()
			f()
		}()
		select {
		case r := <-done:
			if r != nil {
				t.Errorf("%s after the failed truncation panicked: %v", name, r)
				return false
			}
			return true
		case <-time.After(time.Second):
			t.Errorf("%s after the failed truncation hangs", name)
			return false
		}
	}
	first, last := l.FirstIndex(), l.LastIndex()
	_ = check("Read(LastIndex)", func() { l.Read(last) }) &&
		check("Read(FirstIndex)", func() { l.Read(first) }) &&
		check("Records", func() {
			it := l.Records(first)
			for range it.All() {
			}
		}) &&
		check("Tail.Next", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			l.Tail(last).Next(ctx, nil)
		}) &&
		check("Stats", func() { l.Stats() })
	if t.Failed() {
		l.mu.TryLock()
		l.mu.Unlock()
	}
}

// TestReview3ApiTruncateBackRemoveFailsThenRead: the same for TruncateBack.
// redoCut takes the later segments out of l.segs (closeAfter), then
// removes their files; when a removal fails it returns before next,
// written, durable and tail are updated. The log is failed, but LastIndex
// still names a record of a segment no longer in l.segs: segFor gives the
// cut segment, and offs.At(index - first) runs past its offsets.
func TestReview3ApiTruncateBackRemoveFailsThenRead(t *testing.T) {
	r3aFailedTruncation(t, func(l *Log) bool { return len(l.segs) >= 3 }, []byte("0123456789"),
		"TruncateBack(10)", func(l *Log) error { return l.TruncateBack(10) })
}
