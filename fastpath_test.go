package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// openFast opens a cache-flush log on small segments (so that appends
// roll over often, each switch closing an epoch of the fast path).
func openFast(t *testing.T) *Log {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
	l, err := Open(t.TempDir(), &Options{Persist: PersistCacheFlush, SegmentSize: 1 << 20, InFlightBound: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func fastRecord(g, i int) []byte {
	return []byte(fmt.Sprintf("g%d-i%d-%s", g, i, bytes.Repeat([]byte{byte(i)}, i%300)))
}

// fastRec is a record a test appended, at the index it was given.
type fastRec struct {
	index uint64
	data  []byte
}

// checkAppended checks a log that holds one record at index 1 and the
// records of got: every index given once, each holding what was appended
// there, and nothing else (no hole, nothing extra). It returns how many
// records the log holds.
func checkAppended(t *testing.T, l *Log, got [][]fastRec) int {
	t.Helper()
	seen := map[uint64]bool{1: true}
	total := 1
	for _, rs := range got {
		for _, r := range rs {
			if seen[r.index] {
				t.Fatalf("index %d given twice", r.index)
			}
			seen[r.index] = true
			total++
			b, err := l.Read(r.index)
			if err != nil {
				t.Fatalf("Read(%d): %v", r.index, err)
			}
			if !bytes.Equal(b, r.data) {
				t.Fatalf("Read(%d) = %q, want %q", r.index, b[:min(len(b), 20)], r.data[:min(len(r.data), 20)])
			}
		}
	}
	if last := l.LastIndex(); last != uint64(total) {
		t.Fatalf("LastIndex %d, want %d (no hole, nothing extra)", last, total)
	}
	return total
}

// Appends take the fast path from the first one, and every switch back
// (rollover, a record larger than the in-flight bound, Stats, a
// truncation) hands over exact state: with appenders on several goroutines
// mixing small records, batches and large ones, every append gets a
// distinct index, every index holds what its append wrote, and the
// counters match.
func TestFastPathConcurrentExact(t *testing.T) {
	l := openFast(t)
	defer l.Close()
	if _, err := l.Append([]byte("first")); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	on := l.fast.on
	l.mu.Unlock()
	if !on {
		t.Fatal("the fast path is off after an append on an idle cache-flush log")
	}
	const goroutines, per = 4, 2000
	got := make([][]fastRec, goroutines)
	var wg sync.WaitGroup
	errc := make(chan error, goroutines)
	var payload uint64
	var payloadMu sync.Mutex
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bytesIn uint64
			for i := 0; i < per; i++ {
				var recs [][]byte // appended with Append when one, else AppendBatch
				switch {
				case i%97 == 0: // larger than the in-flight bound: the locked path
					recs = [][]byte{bytes.Repeat([]byte{byte(g)}, 9<<10)}
				case i%13 == 0:
					recs = [][]byte{fastRecord(g, i), fastRecord(g, i+1000), fastRecord(g, i+2000)}
				case i%151 == 0:
					if s := l.Stats(); s.LastIndex < s.FirstIndex-1 {
						errc <- fmt.Errorf("Stats: LastIndex %d below FirstIndex %d", s.LastIndex, s.FirstIndex)
						return
					}
				default:
					recs = [][]byte{fastRecord(g, i)}
				}
				if len(recs) > 0 {
					var idx uint64
					var err error
					if len(recs) == 1 {
						idx, err = l.Append(recs[0])
					} else {
						idx, err = l.AppendBatch(recs)
					}
					if err != nil {
						errc <- err
						return
					}
					for j, d := range recs {
						got[g] = append(got[g], fastRec{idx + uint64(j), d})
						bytesIn += uint64(len(d))
					}
				}
				if last := l.LastIndex(); len(got[g]) > 0 && last < got[g][len(got[g])-1].index {
					errc <- fmt.Errorf("LastIndex %d below acknowledged index %d", last, got[g][len(got[g])-1].index)
					return
				}
			}
			payloadMu.Lock()
			payload += bytesIn
			payloadMu.Unlock()
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	total := checkAppended(t, l, got)
	s := l.Stats()
	if s.Records != uint64(total) || s.Bytes != payload+5 {
		t.Fatalf("Stats: Records %d Bytes %d, want %d and %d", s.Records, s.Bytes, total, payload+5)
	}
	if s.Segments < 2 {
		t.Fatalf("Stats: %d segments: the test never rolled over", s.Segments)
	}
	// Reopened, the log holds exactly the same.
	dir := l.dir
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(dir, &Options{Persist: PersistCacheFlush, SegmentSize: 1 << 20, InFlightBound: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if last := l2.LastIndex(); last != uint64(total) {
		t.Fatalf("reopened: LastIndex %d, want %d", last, total)
	}
}

// A Tailer far ahead of the log, with appends publishing on the fast path
// while it waits, gets every record as it becomes durable: no wake-up is
// lost between its look at the durable point and its wait.
func TestFastPathTailerFarAhead(t *testing.T) {
	const n = 3000
	for _, from := range []uint64{2, 100, n} {
		l := openFast(t)
		if _, err := l.Append([]byte("first")); err != nil {
			t.Fatal(err)
		}
		tl := l.Tail(from)
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for want := from; want <= n+1; want++ {
				idx, _, err := tl.Next(ctx, nil)
				if err != nil {
					done <- fmt.Errorf("Next after %d: %w", want-1, err)
					return
				}
				if idx != want {
					done <- fmt.Errorf("Next gave %d, want %d", idx, want)
					return
				}
			}
			done <- nil
		}()
		var wg sync.WaitGroup
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; l.LastIndex() <= n; i++ {
					if _, err := l.Append(fastRecord(g, i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := <-done; err != nil {
			t.Fatalf("tailer from %d: %v", from, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// With more appenders than processors, appends stay on the fast path: a
// rollover, an epoch out of reservations or a record larger than the
// in-flight bound sends only a few appends to the locked path, and the
// fast path reopens as soon as they are done, instead of the locked path
// keeping every appender for as long as appends keep coming.
func TestFastPathManyAppenders(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	l := openFast(t)
	defer l.Close()
	if _, err := l.Append([]byte("first")); err != nil {
		t.Fatal(err)
	}
	const goroutines, per, largeEvery = 16, 2000, 500
	got := make([][]fastRec, goroutines)
	var wg sync.WaitGroup
	errc := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				d := fastRecord(g, i)
				if i%largeEvery == largeEvery-1 {
					d = bytes.Repeat([]byte{byte(g)}, 9<<10) // over the bound
				}
				idx, err := l.Append(d)
				if err != nil {
					errc <- err
					return
				}
				got[g] = append(got[g], fastRec{idx, d})
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	total := checkAppended(t, l, got)
	s := l.Stats() // closes the epoch: the fast path's counters are in
	l.mu.Lock()
	fast := l.fast.appends
	l.mu.Unlock()
	locked := s.Appends - fast
	// The records over the bound must take the locked path; besides them,
	// each rollover, each epoch switch and each record over the bound
	// (while it waits for the fast appends before it to become durable)
	// may catch at most every other appender on its way there.
	large := uint64(goroutines * per / largeEvery)
	switches := uint64(s.Segments) + uint64(total)/fastMaxK + 1 + large
	t.Logf("%d appends, %d on the locked path (%d over the bound), %d segments", s.Appends, locked, large, s.Segments)
	if most := large + (goroutines-1)*switches; locked < large || locked > most {
		t.Fatalf("%d of %d appends on the locked path, want %d to %d", locked, s.Appends, large, most)
	}
}

// The slots of the gate: one per processor and per CPU, whichever are
// fewer, at most fastMaxSlots and at least one. An epoch opened with
// more processors than CPUs gets one per CPU.
func TestFastPathSlots(t *testing.T) {
	for _, tc := range []struct {
		procs, cpus int
		want        uint64
	}{
		{1, 1, 1}, {2, 2, 2}, {8, 2, 2}, {2, 8, 2}, {64, 64, fastMaxSlots},
		{fastMaxSlots, fastMaxSlots + 1, fastMaxSlots}, {0, 4, 1}, {4, 0, 1},
	} {
		if got := fastSlots(tc.procs, tc.cpus); got != tc.want {
			t.Errorf("fastSlots(%d processors, %d CPUs) = %d, want %d", tc.procs, tc.cpus, got, tc.want)
		}
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4 * runtime.NumCPU()))
	l := openFast(t)
	defer l.Close()
	if _, err := l.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	ep := l.fast.ep.Load()
	if ep == nil {
		t.Fatal("no epoch open after an append on the fast path")
	}
	if want := fastSlots(runtime.GOMAXPROCS(0), runtime.NumCPU()); ep.slots != want || ep.slots > uint64(runtime.NumCPU()) {
		t.Fatalf("epoch with GOMAXPROCS %d on %d CPUs has %d slots, want %d", runtime.GOMAXPROCS(0), runtime.NumCPU(), ep.slots, want)
	}
}

// The gate lets as many reservations be in flight at once as there are
// slots (two here: two processors on at least two CPUs), however many
// records each holds, and holds further appends until one is published.
func TestFastPathGate(t *testing.T) {
	rtEnv(t)
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: one slot (fastSlots)")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // two slots
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		armed   bool
		inside  int
		entered = make(chan int, 3)
		release = make(chan struct{})
		once    sync.Once
	)
	releaseAll := func() { once.Do(func() { close(release) }) }
	defer releaseAll() // on failure too: Close waits for the appends
	m := &fenceFailMedia{Media: &osMedia{hw: &h}, before: func() {
		mu.Lock()
		if !armed {
			mu.Unlock()
			return
		}
		inside++
		entered <- inside
		mu.Unlock()
		<-release
	}}
	o := rtOpts(false)
	o.Media = m
	l := rtOpen(t, rtDir(t), o)
	if _, err := l.Append([]byte("first")); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	fast0 := l.fast.appends
	l.mu.Unlock()
	mu.Lock()
	armed = true
	mu.Unlock()
	got := make([][]fastRec, 3)
	errc := make(chan error, 3)
	appendIn := func(g int, recs [][]byte) {
		idx, err := l.AppendBatch(recs)
		for j, d := range recs {
			got[g] = append(got[g], fastRec{idx + uint64(j), d})
		}
		errc <- err
	}
	batch := func(g int) [][]byte {
		recs := make([][]byte, 100)
		for i := range recs {
			recs[i] = fastRecord(g, i)
		}
		return recs
	}
	// Two batches of 100 records: two reservations, both in flight.
	go appendIn(0, batch(0))
	go appendIn(1, batch(1))
	for range 2 {
		select {
		case <-entered:
		case <-time.After(20 * time.Second):
			t.Fatal("two batch appends did not get to their fences at once")
		}
	}
	// A third waits at the gate.
	go appendIn(2, [][]byte{[]byte("third")})
	select {
	case n := <-entered:
		t.Fatalf("%d appends past their reservations with two processors", n)
	case <-time.After(100 * time.Millisecond):
	}
	releaseAll()
	for range 3 {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the appends did not return once released")
		}
	}
	select {
	case n := <-entered:
		if n != 3 {
			t.Fatalf("%d appends got to their fences, want 3", n)
		}
	default:
		t.Fatal("the third append returned without getting to its fence")
	}
	checkAppended(t, l, got)
	l.mu.Lock()
	fast := l.fast.appends
	l.mu.Unlock()
	if fast-fast0 != 3 {
		t.Fatalf("%d appends on the fast path, want the three", fast-fast0)
	}
}

// TestTailerWakeUpPublish runs a Tailer that is about to wait, or
// waiting, when the next record is published, once per way of
// publishing (WAL_PUBLISH): with the plain store, an append's load of
// the waiting flag may pass its publication, so without the Tailer's
// membarrier a wake-up can be lost, and the Tailer would wait until the
// next append, which here comes only after it returned the last one. A
// random pause before each append moves the publication across the
// Tailer's window. The race is one of timing: without the membarrier,
// this test failed in 2 of 10 runs, not in each (TestTailerFenced checks
// the membarrier's bookkeeping deterministically).
func TestTailerWakeUpPublish(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs the appender and the Tailer running at once")
	}
	for _, pub := range []string{"store", "xchg"} {
		// With several Tailers, only the first to wait after a wake-up
		// calls membarrier; the others rely on it.
		for _, tailers := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/tailers=%d", pub, tailers), func(t *testing.T) {
				t.Setenv("WAL_PUBLISH", pub)
				if _, err := DetectHardware(); err != nil {
					t.Skip(err) // no plain store in this build or kernel
				}
				testTailerWakeUp(t, pub, tailers)
			})
		}
	}
}

func testTailerWakeUp(t *testing.T, pub string, tailers int) {
	l := openFast(t)
	defer l.Close()
	if got := l.Hardware().Publish; got != pub {
		t.Fatalf("Hardware().Publish = %q, want %q", got, pub)
	}
	n := 20000
	if testing.Short() {
		n = 2000
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make([]atomic.Uint64, tailers)
	tailErr := make(chan error, tailers)
	for k := range seen {
		go func() {
			tl := l.Tail(1)
			var buf []byte
			for {
				i, b, err := tl.Next(ctx, buf)
				if err != nil {
					tailErr <- fmt.Errorf("tailer %d: %w", k, err)
					return
				}
				if want := fmt.Sprint(i); string(b) != want {
					tailErr <- fmt.Errorf("tailer %d: record %d = %q, want %q", k, i, b, want)
					return
				}
				buf = b
				seen[k].Store(i)
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := uint64(1); i <= uint64(n); i++ {
		for range rng.IntN(200) {
			spinSink.Add(1)
		}
		if got, err := l.Append([]byte(fmt.Sprint(i))); err != nil || got != i {
			t.Fatalf("Append %d = %d, %v", i, got, err)
		}
		for k := range seen {
			for seen[k].Load() < i {
				select {
				case err := <-tailErr:
					t.Fatal(err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("tailer %d is stuck at %d after append %d: a lost wake-up", k, seen[k].Load(), i)
				}
				runtime.Gosched()
			}
		}
	}
	cancel()
	for range seen {
		if err := <-tailErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("%v, want context.Canceled", err)
		}
	}
}

// TestTailerFenced checks the bookkeeping that lets only the first
// waiting Tailer call membarrier: set once one has, cleared with the
// waiting flag when the Tailers are woken, so that the next wait calls it
// again.
func TestTailerFenced(t *testing.T) {
	t.Setenv("WAL_PUBLISH", "store")
	if _, err := DetectHardware(); err != nil {
		t.Skip(err)
	}
	l := openFast(t)
	defer l.Close()
	state := func() (on, fenced bool, watch int32) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.fast.on, l.fast.fenced, l.fast.watch.Load()
	}
	if _, err := l.Append([]byte("x")); err != nil { // opens the fast path
		t.Fatal(err)
	}
	if on, fenced, _ := state(); !on || fenced {
		t.Fatalf("after an append: fast path on %v, fenced %v; want on, not fenced", on, fenced)
	}
	for round := uint64(1); round <= 3; round++ {
		got := make(chan error, 1)
		go func() {
			i, _, err := l.Tail(round+1).Next(context.Background(), nil)
			if err == nil && i != round+1 {
				err = fmt.Errorf("Next = %d, want %d", i, round+1)
			}
			got <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, fenced, watch := state(); fenced && watch == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the waiting Tailer never called membarrier", round)
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := l.Append([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, fenced, watch := state(); fenced || watch != 0 {
			t.Fatalf("round %d: after the wake-up fenced %v, watch %d; want both cleared", round, fenced, watch)
		}
	}
}

// spinSink is what TestTailerWakeUpPublish's pauses count into.
var spinSink atomic.Uint64
