package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// biasLog opens a cache-flush log with biased reservation, or skips where
// this build or kernel has none (-race, purego, no membarrier).
func biasLog(t *testing.T, segSize int64) *Log {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
	t.Setenv("WAL_RESERVE", "")
	l, err := Open(t.TempDir(), &Options{Persist: PersistCacheFlush, SegmentSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Hardware().Reserve; got != "biased" {
		l.Close()
		t.Skipf("reservation is %q here (it needs the plain-store publication: amd64 without purego or -race, and membarrier)", got)
	}
	return l
}

// appendUntilOwned appends 64-byte records until the open epoch is owned
// by this goroutine's processor, or skips the test if none is after four
// epochs.
func appendUntilOwned(t *testing.T, l *Log) {
	t.Helper()
	d := make([]byte, 64)
	for ep := l.fast.ep.Load(); ep == nil || ep.owner == 0; ep = l.fast.ep.Load() {
		if _, err := l.Append(d); err != nil {
			t.Fatal(err)
		}
		if l.LastIndex() > 4*fastMaxK {
			t.Skip("no owned epoch: the appending goroutine kept changing processors")
		}
	}
}

// biasRecord is record i of goroutine g: sizes from empty to past
// hashFirstMax, so that appendOne's two ways of hashing and the ones it
// leaves to appendFast all run.
func biasRecord(g, i int) []byte {
	sizes := [...]int{0, 1, 7, 8, 13, 64, 100, 256, 1000, hashFirstMax, hashFirstMax + 904}
	n := sizes[(i*7+g)%len(sizes)]
	b := bytes.Repeat([]byte{byte(g*31 + i)}, n)
	if n >= 8 {
		le.PutUint64(b, uint64(g)<<32|uint64(i))
	}
	return b
}

// One appender, on one processor: after an epoch of its appends, the next
// epochs are owned by its processor and Append takes appendOne. Every record reads back
// as written and the counters add up. Then a Tailer follows more appends
// and sees each one in order (appendOne wakes it); its wake-ups move the
// appender between processors, which takes its epochs from it, so how
// many of those appends were made in owned epochs is only reported.
func TestBiasSingleAppender(t *testing.T) {
	l := biasLog(t, 64<<20)
	defer l.Close()
	const n = 3*fastMaxK + 500
	var want [][]byte
	var bytesIn uint64
	appendAll := func(from int) (owned int) {
		for i := from; i < from+n; i++ {
			d := biasRecord(0, i)
			idx, err := l.Append(d)
			if err != nil {
				t.Fatal(err)
			}
			if idx != uint64(i+1) {
				t.Fatalf("append %d got index %d", i, idx)
			}
			if ep := l.fast.ep.Load(); ep != nil && ep.owner != 0 {
				owned++
			}
			want = append(want, d)
			bytesIn += uint64(len(d))
		}
		return owned
	}
	// One processor for this part: an epoch is owned only by a processor
	// that made every reservation of the one before, and with more the
	// runtime may move the goroutine between them (in the emulated DAX
	// guest it did: 3322 of 12785 appends in owned epochs).
	procs := runtime.GOMAXPROCS(1)
	owned := appendAll(0)
	runtime.GOMAXPROCS(procs)
	l.mu.Lock()
	revokes := l.fast.bias.revokes
	l.mu.Unlock()
	// The first epoch is never owned; the ones after it are.
	if owned < 2*fastMaxK || revokes < 1 {
		t.Fatalf("%d of %d appends returned in an owned epoch, %d owned epochs closed: the bias never took", owned, n, revokes)
	}
	t.Logf("alone: %d of %d appends returned in an owned epoch", owned, n)

	done := make(chan error, 1)
	go func() {
		tl := l.Tail(n + 1)
		var buf []byte
		for i := n; i < 2*n; i++ {
			idx, b, err := tl.Next(context.Background(), buf)
			if err != nil {
				done <- err
				return
			}
			if idx != uint64(i+1) || !bytes.Equal(b, biasRecord(0, i)) {
				done <- fmt.Errorf("the tailer read index %d, want %d, or not the record appended there", idx, i+1)
				return
			}
			buf = b
		}
		done <- nil
	}()
	owned = appendAll(n)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("followed by a Tailer: %d of %d appends returned in an owned epoch", owned, n)
	for i, d := range want {
		b, err := l.Read(uint64(i + 1))
		if err != nil || !bytes.Equal(b, d) {
			t.Fatalf("Read(%d): %v, equal %v", i+1, err, bytes.Equal(b, d))
		}
	}
	s := l.Stats()
	if s.Appends != 2*n || s.Bytes != bytesIn || s.Records != 2*n {
		t.Fatalf("Stats: %d appends, %d bytes, %d records; want %d, %d, %d", s.Appends, s.Bytes, s.Records, 2*n, bytesIn, 2*n)
	}
}

// Appenders that come and go on several processors: each phase starts
// with one goroutine long enough for its processor to own the epochs,
// then several join it, take the epoch from the owner (membarrier) and
// reserve with the compare-and-swap. No index is given twice, every index
// holds what its append wrote, nothing is missing, and the contention
// was real: owned epochs were closed for it.
func TestBiasContention(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	l := biasLog(t, 64<<20)
	defer l.Close()
	if _, err := l.Append([]byte("first")); err != nil {
		t.Fatal(err)
	}
	const phases, solo, joiners, per = 6, 2*fastMaxK + 100, 3, 1500
	var got [][]fastRec
	for p := range phases {
		// Let the penalty of the last contention run out, so that this
		// phase's single appender owns epochs again.
		l.mu.Lock()
		l.fast.bias.skip, l.fast.bias.penalty = 0, 0
		l.mu.Unlock()
		var mine []fastRec
		for i := range solo {
			d := biasRecord(p, i)
			idx, err := l.Append(d)
			if err != nil {
				t.Fatal(err)
			}
			mine = append(mine, fastRec{idx, d})
		}
		recs := make([][]fastRec, joiners+1)
		var wg sync.WaitGroup
		errc := make(chan error, joiners+1)
		for g := range joiners + 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					d := biasRecord(100+p*10+g, i)
					idx, err := l.Append(d)
					if err != nil {
						errc <- err
						return
					}
					recs[g] = append(recs[g], fastRec{idx, d})
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		got = append(got, mine)
		got = append(got, recs...)
	}
	checkAppended(t, l, got)
	l.mu.Lock()
	revokes, contended := l.fast.bias.revokes, l.fast.bias.contended
	l.mu.Unlock()
	t.Logf("%d owned epochs closed, %d of them for contention", revokes, contended)
	if contended == 0 {
		t.Fatal("no owned epoch was closed for contention: the test did not exercise revocation")
	}
}

// An append in an owned epoch that faults (the segment file truncated by
// another program) returns ErrCorrupt and fails the log; the next append
// gets ErrFailed, and Close does not wait for ever.
func TestBiasFault(t *testing.T) {
	l := biasLog(t, 1<<20)
	defer l.Close()
	d := make([]byte, 64)
	appendUntilOwned(t, l)
	seg := l.segs[len(l.segs)-1]
	if err := os.Truncate(seg.path, 4096); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; err == nil && i < 1<<20/96; i++ {
		_, err = l.Append(d)
	}
	// The fault, which failed the log: ErrFailed wrapping ErrCorrupt.
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrFailed) {
		t.Fatalf("Append into a truncated segment in an owned epoch: %v", err)
	}
	if _, err := l.Append(d); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after the fault: %v", err)
	}
}

// biasOwner keeps an owned epoch's owner while no other processor
// appended in it, gives an unowned epoch's successor to the processor
// that made its last biasMinK reservations, and backs off, doubling,
// after contention closed an owned epoch.
func TestBiasOwnerDecision(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		prev, lastP, streak   uint64
		mixed                 bool
		skip, penalty         int
		want                  uint64
		wantSkip, wantPenalty int
	}{
		{"one processor, enough", 0, 3, biasMinK, false, 0, 0, 3, 0, 0},
		{"too few in a row", 0, 3, biasMinK - 1, false, 0, 0, 0, 0, 0},
		{"no reservation", 0, 0, 0, false, 0, 0, 0, 0, 0},
		{"owned, uncontended", 3, 0, 0, false, 0, 4, 3, 0, 2},
		{"owned, contended", 3, 0, 0, true, 0, 0, 0, 0, 1},
		{"contended again", 3, 0, 0, true, 0, 8, 0, 15, 16},
		{"penalty cap", 3, 0, 0, true, 0, biasMaxPenalty, 0, biasMaxPenalty - 1, biasMaxPenalty},
		{"penalty running", 0, 3, fastMaxK, false, 5, 8, 0, 4, 8},
		{"penalty over", 0, 3, fastMaxK, false, 0, 8, 3, 0, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Log{}
			l.hw.bias = true
			f := &l.fast
			f.ep.Store(&fastEpoch{owner: tc.prev})
			f.lastP.Store(tc.lastP)
			f.streak.Store(tc.streak)
			f.mixed.Store(tc.mixed)
			f.bias.skip, f.bias.penalty = tc.skip, tc.penalty
			if got := l.biasOwner(); got != tc.want || f.bias.skip != tc.wantSkip || f.bias.penalty != tc.wantPenalty {
				t.Fatalf("owner %d skip %d penalty %d; want %d, %d, %d", got, f.bias.skip, f.bias.penalty, tc.want, tc.wantSkip, tc.wantPenalty)
			}
		})
	}
	l := &Log{} // hw.bias false: never an owner
	l.fast.lastP.Store(1)
	l.fast.streak.Store(fastMaxK)
	if got := l.biasOwner(); got != 0 {
		t.Fatalf("owner %d without biased reservation", got)
	}
}

// Appenders that come and go in random numbers (1 to 8, on GOMAXPROCS
// processors) on one log, with single appends and batches of random
// sizes, for WAL_STRESS (a duration; 2s unless set). After each round
// every append returned, and LastIndex counts them all. A round that
// makes no progress for 20 seconds dumps every goroutine's stack and
// fails: it hunts a hang between an owned epoch's owner and revocation.
func TestBiasStress(t *testing.T) {
	d := 2 * time.Second
	if v := os.Getenv("WAL_STRESS"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	l := biasLog(t, 64<<20)
	defer l.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var progress atomic.Uint64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		last, since := progress.Load(), time.Now()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			if p := progress.Load(); p != last {
				last, since = p, time.Now()
				continue
			}
			if time.Since(since) > 20*time.Second {
				buf := make([]byte, 1<<20)
				os.Stderr.Write(buf[:runtime.Stack(buf, true)])
				panic("TestBiasStress: no append returned for 20s")
			}
		}
	}()
	want := l.LastIndex()
	rounds := 0
	for end := time.Now().Add(d); time.Now().Before(end); rounds++ {
		g := []int{1, 1, 2, 3, 8}[rng.IntN(5)]
		per := 1 + rng.IntN(3*fastMaxK)
		seed := rng.Uint64()
		var wg sync.WaitGroup
		errc := make(chan error, g)
		for i := range g {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				buf := make([]byte, 5000)
				for j := 0; j < per; j++ {
					var err error
					if r.IntN(50) == 0 {
						n := 1 + r.IntN(8)
						_, err = l.AppendBatch(make([][]byte, n))
						j += n - 1
						progress.Add(uint64(n))
					} else {
						_, err = l.Append(buf[:r.IntN(300)+r.IntN(2)*r.IntN(4700)])
						progress.Add(1)
					}
					if err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		// The batches may overshoot per; count what progress saw.
		want = l.LastIndex()
		if got := progress.Load(); want != got {
			t.Fatalf("round %d: LastIndex %d, %d appends returned", rounds, want, got)
		}
	}
	l.mu.Lock()
	revokes, contended := l.fast.bias.revokes, l.fast.bias.contended
	l.mu.Unlock()
	t.Logf("%d rounds, %d appends; %d owned epochs closed, %d for contention", rounds, want, revokes, contended)
}

// A payload whose memory faults when read (a record of another log's
// iterator, whose segment file another program truncated) is hashed by
// appendOne before it reserves: the fault must become Append's error, as
// on the compare-and-swap path, and not a fatal error of the process.
func TestBiasFaultingPayload(t *testing.T) {
	dst := biasLog(t, 64<<20)
	defer dst.Close()
	appendUntilOwned(t, dst)
	t.Setenv("WAL_RESERVE", "cas")
	appendFaultingPayload(t, dst, 1000)
}

// The same in an epoch nobody owns (as in -race builds, where none is),
// where appendOne reserves with the compare-and-swap: a payload of up to
// hashFirstMax bytes faults in the hash before the reservation (appendOne
// declines, and appendFast meets the fault), a larger one in the storing
// pass after it (appendOne's deferred recovery passes the turn on).
func TestUnownedFaultingPayload(t *testing.T) {
	for _, size := range []int{1000, hashFirstMax + 1000} {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			t.Setenv("WAL_PERSIST", "")
			t.Setenv("WAL_RESERVE", "cas")
			dst, err := Open(t.TempDir(), &Options{Persist: PersistCacheFlush, SegmentSize: 64 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			if _, err := dst.Append(make([]byte, 64)); err != nil {
				t.Fatal(err)
			}
			ep := dst.fast.ep.Load()
			if ep == nil || ep.owner != 0 || !dst.hw.direct(size) || recSize(size) > ep.bound {
				t.Skipf("no unowned epoch that takes %d bytes with non-temporal stores here (hardware %+v)", size, dst.Hardware())
			}
			appendFaultingPayload(t, dst, size)
			// The turn was passed on: the log failed, and says so at once.
			if _, err := dst.Append(make([]byte, 64)); err == nil {
				t.Fatal("an Append after the fault succeeded; the log should have failed")
			}
		})
	}
}

// appendFaultingPayload appends to dst a payload of size bytes (at most
// 100 KiB) that faults when read, and checks that the fault comes back as
// ErrCorrupt.
func appendFaultingPayload(t *testing.T, dst *Log, size int) {
	t.Helper()
	src, err := Open(t.TempDir(), &Options{Persist: PersistCacheFlush, SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Append(make([]byte, 200<<10)); err != nil {
		t.Fatal(err)
	}
	it := src.Records(1)
	n := 0
	for _, rec := range it.All() {
		n++
		if err := os.Truncate(src.segs[len(src.segs)-1].path, 4096); err != nil {
			t.Fatal(err)
		}
		payload := rec[len(rec)-size:] // past the file's first page, which the truncation keeps
		_, err := dst.Append(payload)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Append of a payload that faults: %v, want ErrCorrupt", err)
		}
		break
	}
	if n != 1 {
		t.Fatalf("the iterator yielded %d records, want 1", n)
	}
}
