package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Review of 247fd18 (appends count themselves in inFlight instead of
// holding closeMu; Close and the truncations quiesce). These tests drive
// the interleavings the counter protocol has to get right: an msync
// group-commit leader syncing with l.mu released while Close or a
// truncation waits, a leader whose sync fails while a truncation waits,
// and Close, a second Close and the truncations racing appenders that
// roll over segments. Every wait is bounded: a deadlock fails with the
// goroutines' stacks instead of hanging.

const r7Wait = 5 * time.Second

func r7Open(t *testing.T, dir string, p Persist) *Log {
	t.Helper()
	l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: p})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// r7Recv waits for ch, failing with every goroutine's stack on timeout.
func r7Recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(r7Wait):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%s: no return within %v (deadlock?)\n%s", what, r7Wait, buf)
		panic("unreachable")
	}
}

// r7Pending fails if ch delivers within a short wait.
func r7Pending[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s returned (%v) while an msync leader was in flight", what, v)
	case <-time.After(100 * time.Millisecond):
	}
}

type r7Res struct {
	idx uint64
	err error
}

func r7AppendAsync(l *Log, data []byte) <-chan r7Res {
	ch := make(chan r7Res, 1)
	go func() {
		i, err := l.Append(data)
		ch <- r7Res{i, err}
	}()
	return ch
}

// r7HoldLeader installs a sync hook that holds the first group-commit
// sync (l.mu released, the leader counted in inFlight) until release is
// closed, then returns fail. It returns the channel closed on entry.
func r7HoldLeader(l *Log, release <-chan struct{}, fail error) <-chan struct{} {
	entered := make(chan struct{})
	var calls atomic.Int32
	l.mu.Lock()
	l.syncHook = func() error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
			return fail
		}
		return nil
	}
	l.mu.Unlock()
	return entered
}

// The msync leader syncs with l.mu released: Close must still wait for it
// (it is in flight), an Append arriving meanwhile gets ErrClosed without
// waiting for the leader, and the leader's record is durable.
func TestReview7CloseWaitsForMsyncLeader(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	dir := t.TempDir()
	l := r7Open(t, dir, PersistMsync)
	if _, err := l.Append([]byte("before")); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := r7HoldLeader(l, release, nil)
	held := []byte("the leader's record")
	leader := r7AppendAsync(l, held)
	r7Recv(t, entered, "the leader reaching its sync")

	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	r7Pending(t, closed, "Close")
	late := r7Recv(t, r7AppendAsync(l, []byte("late")), "an Append while Close waits for the leader")
	if !errors.Is(late.err, ErrClosed) {
		t.Fatalf("Append while Close waits = %d, %v; want ErrClosed", late.idx, late.err)
	}
	if _, err := l.AppendBatch(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("empty AppendBatch while Close waits = %v; want ErrClosed", err)
	}
	close(release)
	lr := r7Recv(t, leader, "the leader's Append")
	if lr.err != nil || lr.idx != 2 {
		t.Fatalf("leader's Append = %d, %v; want 2, nil", lr.idx, lr.err)
	}
	if err := r7Recv(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v; want ErrClosed", err)
	}
	l = r7Open(t, dir, PersistMsync)
	defer l.Close()
	if got, err := l.Read(2); err != nil || !bytes.Equal(got, held) || l.LastIndex() != 2 {
		t.Fatalf("after reopen: Read(2) = %q, %v, LastIndex %d; want %q, nil, 2", got, err, l.LastIndex(), held)
	}
}

// A truncation waits for an msync leader whose sync then fails: the
// leader's Append and the truncation report the failure, appends queued
// behind the truncation get it too (none hangs on quiet), and Close works.
func TestReview7TruncateBackWaitsForFailingMsyncLeader(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	l := r7Open(t, t.TempDir(), PersistMsync)
	for i := 0; i < 3; i++ {
		if _, err := l.Append([]byte("kept")); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	boom := errors.New("injected msync failure")
	entered := r7HoldLeader(l, release, boom)
	leader := r7AppendAsync(l, []byte("synced by a failing leader"))
	r7Recv(t, entered, "the leader reaching its sync")

	truncated := make(chan error, 1)
	go func() { truncated <- l.TruncateBack(1) }()
	r7Pending(t, truncated, "TruncateBack")
	queued := r7AppendAsync(l, []byte("queued behind TruncateBack"))
	r7Pending(t, queued, "an Append queued behind TruncateBack")
	close(release)

	if r := r7Recv(t, leader, "the leader's Append"); !errors.Is(r.err, ErrFailed) {
		t.Fatalf("leader's Append = %d, %v; want ErrFailed", r.idx, r.err)
	}
	if err := r7Recv(t, truncated, "TruncateBack"); !errors.Is(err, ErrFailed) {
		t.Fatalf("TruncateBack on a log that failed while it waited = %v; want ErrFailed", err)
	}
	if r := r7Recv(t, queued, "the queued Append"); !errors.Is(r.err, ErrFailed) {
		t.Fatalf("queued Append = %d, %v; want ErrFailed", r.idx, r.err)
	}
	l.mu.Lock()
	quiet, inFlight := l.quiet, l.inFlight
	l.mu.Unlock()
	if quiet != 0 || inFlight != 0 {
		t.Fatalf("after the failed truncation: quiet %d, inFlight %d; want 0, 0", quiet, inFlight)
	}
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	r7Recv(t, done, "Close of the failed log")
}

// Appenders that roll over segments race TruncateBack, TruncateFront
// (within the log and past its end) and finally two Closes. Nothing may
// hang; one Close succeeds and the other gets ErrClosed; every append
// returns success, ErrClosed or (never here) another error; the counters
// are back at rest; and after reopening, the log reads back whole.
func TestReview7TruncationsAndClosesRaceAppends(t *testing.T) {
	for _, p := range []Persist{PersistCacheFlush, PersistMsync} {
		t.Run(p.String(), func(t *testing.T) {
			t.Setenv("WAL_PERSIST", "")
			dir := t.TempDir()
			l := r7Open(t, dir, p)
			const appenders = 4
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var acked, closedErrs atomic.Int64
			errs := make(chan error, appenders+1)
			for a := 0; a < appenders; a++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					data := make([]byte, 3000+a*500) // a 1 MiB segment holds a few hundred
					for {
						if _, err := l.Append(data); err != nil {
							if errors.Is(err, ErrClosed) {
								closedErrs.Add(1)
								return
							}
							errs <- fmt.Errorf("appender %d: %w", a, err)
							return
						}
						acked.Add(1)
						select {
						case <-stop:
							return
						default:
						}
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(7, 7))
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var err error
					first, last := l.FirstIndex(), l.LastIndex()
					switch i % 3 {
					case 0:
						if last >= first {
							err = l.TruncateBack(first + rng.Uint64N(last-first+1))
						}
					case 1:
						if last >= first {
							err = l.TruncateFront(first + rng.Uint64N(last-first+1))
						}
					case 2:
						if i%9 == 2 {
							err = l.TruncateFront(last + 50) // past the end
						}
					}
					if err != nil && !errors.Is(err, ErrClosed) {
						errs <- fmt.Errorf("truncation %d: %w", i, err)
						return
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
				}
			}()
			time.Sleep(400 * time.Millisecond)
			c1, c2 := make(chan error, 1), make(chan error, 1)
			go func() { c1 <- l.Close() }()
			go func() { c2 <- l.Close() }()
			e1, e2 := r7Recv(t, c1, "Close"), r7Recv(t, c2, "the second Close")
			if (e1 == nil) == (e2 == nil) || !(errors.Is(e1, ErrClosed) || errors.Is(e2, ErrClosed)) {
				t.Fatalf("two Closes returned %v and %v; want nil and ErrClosed", e1, e2)
			}
			close(stop)
			all := make(chan struct{})
			go func() { wg.Wait(); close(all) }()
			r7Recv(t, all, "appenders and truncator after Close")
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if acked.Load() == 0 {
				t.Fatal("no append succeeded: the race exercised nothing")
			}
			l.mu.Lock()
			inFlight := l.inFlight
			l.mu.Unlock()
			if inFlight != 0 {
				t.Fatalf("inFlight %d after Close", inFlight)
			}
			l = r7Open(t, dir, p)
			defer l.Close()
			for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
				if _, err := l.Read(i); err != nil {
					t.Fatalf("after reopen, Read(%d) in [%d, %d]: %v", i, l.FirstIndex(), l.LastIndex(), err)
				}
			}
			t.Logf("%d appends acknowledged, %d got ErrClosed; reopened [%d, %d]", acked.Load(), closedErrs.Load(), l.FirstIndex(), l.LastIndex())
		})
	}
}

// Close racing appenders, with no truncation: every acknowledged record
// is there after reopening (Close waited for the appends in flight).
func TestReview7CloseRacingAppendsKeepsAcked(t *testing.T) {
	for _, p := range []Persist{PersistCacheFlush, PersistMsync} {
		t.Run(p.String(), func(t *testing.T) {
			t.Setenv("WAL_PERSIST", "")
			dir := t.TempDir()
			l := r7Open(t, dir, p)
			const appenders = 6
			var wg sync.WaitGroup
			var mu sync.Mutex
			ackedIdx := map[uint64][]byte{}
			for a := 0; a < appenders; a++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						data := fmt.Appendf(bytes.Repeat([]byte{byte(a)}, 2000+a*300), "appender %d record %d", a, n)
						idx, err := l.Append(data)
						if err != nil {
							if !errors.Is(err, ErrClosed) {
								t.Errorf("appender %d: %v", a, err)
							}
							return
						}
						mu.Lock()
						ackedIdx[idx] = data
						mu.Unlock()
					}
				}()
			}
			time.Sleep(300 * time.Millisecond)
			closed := make(chan error, 1)
			go func() { closed <- l.Close() }()
			if err := r7Recv(t, closed, "Close"); err != nil {
				t.Fatal(err)
			}
			all := make(chan struct{})
			go func() { wg.Wait(); close(all) }()
			r7Recv(t, all, "appenders after Close")
			if len(ackedIdx) == 0 {
				t.Fatal("no append succeeded")
			}
			l = r7Open(t, dir, p)
			defer l.Close()
			for idx, want := range ackedIdx {
				if got, err := l.Read(idx); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("acknowledged record %d after reopen: %v (len %d, want %d)", idx, err, len(got), len(want))
				}
			}
		})
	}
}

// An Append that waits on quiet behind a truncation must be woken when
// the truncation lets go (unquiesce), not only by some later broadcast:
// here nothing else runs that would broadcast. Whether the Append is in
// cond.Wait then (rather than queued on l.mu) depends on which of it and
// the truncation wins l.mu after the held append commits, so the scenario
// is repeated. Bounded, where a lost wakeup would hang.
func TestReview7QueuedAppendWokenAfterTruncation(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	l := r7Open(t, t.TempDir(), PersistCacheFlush)
	defer l.Close()
	for round := 0; round < 60; round++ {
		for i := 0; i < 3; i++ {
			if _, err := l.Append([]byte("kept or cut")); err != nil {
				t.Fatal(err)
			}
		}
		keep := l.LastIndex() - 2
		_, finish := holdAppend(t, l, []byte("in flight"))
		truncated := make(chan error, 1)
		go func() { truncated <- l.TruncateBack(keep) }()
		for {
			l.mu.Lock()
			q := l.quiet
			l.mu.Unlock()
			if q > 0 {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		queued := r7AppendAsync(l, []byte("queued"))
		time.Sleep(time.Millisecond) // into reserve's wait on quiet
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		if err := r7Recv(t, truncated, "TruncateBack"); err != nil {
			t.Fatal(err)
		}
		if r := r7Recv(t, queued, fmt.Sprintf("round %d: the Append queued behind TruncateBack", round)); r.err != nil || r.idx != keep+1 {
			t.Fatalf("round %d: queued Append = %d, %v; want %d, nil", round, r.idx, r.err, keep+1)
		}
	}
}
