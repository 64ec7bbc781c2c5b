package wal

import (
	"sync"
	"testing"
	"time"
)

// Group commit with msync: a leader gathers the records of the appenders
// the previous sync released before it syncs, and a lone appender never
// waits for anyone.

// gcOpen opens an msync log on /dev/shm whose syncs take at least delay
// (a hook sleeps before each msync, as a slow disk would), with the
// leader's wait capped at cap.
func gcOpen(t *testing.T, delay, cap time.Duration) *Log {
	t.Helper()
	apiNoEnv(t)
	l := apiOpen(t, apiShmDir(t), &Options{SegmentSize: apiSeg, Persist: PersistMsync})
	t.Cleanup(func() { l.Close() })
	apiSetHook(l, func() error { time.Sleep(delay); return nil })
	l.mu.Lock()
	l.gatherCap = cap
	l.mu.Unlock()
	return l
}

func gcCounters(l *Log) (appends, syncs, waits uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats.Appends, l.stats.Syncs, l.gatherWaits
}

func TestGroupCommitLoneAppenderNeverWaits(t *testing.T) {
	l := gcOpen(t, 200*time.Microsecond, time.Second)
	for i := 0; i < 50; i++ {
		if _, err := l.Append([]byte("lone")); err != nil {
			t.Fatal(err)
		}
	}
	appends, syncs, waits := gcCounters(l)
	if appends != 50 || syncs != 50 {
		t.Errorf("lone appender: %d appends, %d syncs; want one sync per append", appends, syncs)
	}
	if waits != 0 {
		t.Errorf("lone appender: the leader waited %d times for other records; want never (no added latency)", waits)
	}
}

func TestGroupCommitGathersEveryAppender(t *testing.T) {
	const writers, each = 16, 25
	// A generous cap, so that the test does not depend on how fast this
	// machine wakes goroutines: what it checks is that the leader waits
	// for the appenders the last sync released, where without gathering
	// the writers split into two groups that take turns (8 per sync).
	l := gcOpen(t, 2*time.Millisecond, 200*time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := l.Append(make([]byte, 256)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	appends, syncs, _ := gcCounters(l)
	if appends != writers*each {
		t.Fatalf("%d appends counted, want %d", appends, writers*each)
	}
	if per := float64(appends) / float64(syncs); per < 12 {
		t.Errorf("%d appenders: %d appends in %d syncs, %.1f per sync; want at least 12", writers, appends, syncs, per)
	}
	if got, want := l.LastIndex(), uint64(writers*each); got != want {
		t.Errorf("LastIndex = %d, want %d", got, want)
	}
}

func TestGroupCommitWaitIsBounded(t *testing.T) {
	// Two appenders, then one of them stops: the other's leader waits at
	// most the cap for a record that never comes, then syncs.
	l := gcOpen(t, time.Millisecond, 20*time.Millisecond)
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := l.Append([]byte("pair")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	start := time.Now()
	for i := 0; i < 10; i++ {
		if _, err := l.Append([]byte("alone")); err != nil {
			t.Fatal(err)
		}
	}
	// Ten appends at a 1 ms sync each; waiting the full cap on every one
	// would take 200 ms, the bound allows it at most on the first few.
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("10 lone appends after the pair stopped took %v; the leader kept waiting for the departed appender", d)
	}
	if got := l.LastIndex(); got != 50 {
		t.Errorf("LastIndex = %d, want 50", got)
	}
}

// A reservation larger than the in-flight bound waits until nothing is in
// flight. Appends that arrive while it waits must queue behind it, or a
// steady stream of small appends, always one in flight, would keep it
// waiting for ever. Here a small record is in flight when a large append
// starts waiting and another small append arrives: the large one must get
// the next index.
func TestLargeReservationNotOvertaken(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	l, err := Open(t.TempDir(), &Options{SegmentSize: 1 << 20, InFlightBound: 4096, Persist: PersistCacheFlush})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	inFlight := []byte("in flight")
	seg, off, first, rs, err := l.reserve(recSize(len(inFlight)), inFlight, nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		index uint64
		err   error
	}
	appendAsync := func(data []byte) chan result {
		ch := make(chan result, 1)
		go func() {
			index, err := l.Append(data)
			ch <- result{index, err}
		}()
		return ch
	}
	reservations := func() uint64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.rseq
	}
	large := appendAsync(make([]byte, 8192)) // more than the bound: waits
	for l.mu.Lock(); l.largeWaiting == 0; l.mu.Lock() {
		l.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	l.mu.Unlock()
	small := appendAsync([]byte("small"))
	// Give the small append time to jump the queue, as it could before.
	before := reservations()
	for i := 0; i < 100 && reservations() == before; i++ {
		time.Sleep(2 * time.Millisecond)
	}
	flushed, werr := l.writeRecords(seg, off, first, inFlight, nil)
	if err := l.commit(rs, first, flushed, werr); err != nil {
		t.Fatal(err)
	}
	lr, sr := <-large, <-small
	if lr.err != nil || sr.err != nil {
		t.Fatal(lr.err, sr.err)
	}
	if lr.index != first+1 || sr.index != first+2 {
		t.Fatalf("large append got index %d, small %d; want %d then %d: the small one overtook the waiting large one", lr.index, sr.index, first+1, first+2)
	}
}
