package fuzz

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/pmwal/wal"
)

// TestCrashConcurrentAppenders: several goroutines append at once (so
// records are written, flushed and fenced out of index order, within the
// in-flight bound) and the power fails at a random event. After recovery
// the oracle must hold: every acknowledged record is there, the log is
// exactly FirstIndex..LastIndex with no hole followed by a kept record,
// every kept record is byte for byte what was appended at its index, and
// batches are whole. Goroutine scheduling makes a failure replay only
// approximately from its seed, which the message gives anyway.
//
// Skipped under -race: the crash image is read while other goroutines
// store into the simulated memory, a data race by design (a real crash
// sees those stores half done, too).
func TestCrashConcurrentAppenders(t *testing.T) {
	if raceEnabled {
		t.Skip("the crash image reads memory other goroutines store into")
	}
	seeds := 120
	if testing.Short() {
		seeds = 30
	}
	acked, kept, err := concurrentCrashes(seeds, Faults{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d crashes with 4 concurrent appenders: %d records acknowledged before a crash, %d kept", seeds, acked, kept)
	if acked == 0 || kept == 0 {
		t.Fatal("the crashes came before anything was appended: the test exercised nothing")
	}
}

// TestCrashConcurrentAppendersHasTeeth: with fences skipped, the same
// crashes must show a violation.
func TestCrashConcurrentAppendersHasTeeth(t *testing.T) {
	if raceEnabled {
		t.Skip("the crash image reads memory other goroutines store into")
	}
	t.Setenv("WAL_NT_THRESHOLD", "off")
	if _, _, err := concurrentCrashes(120, Faults{SkipFence: true}); err == nil {
		t.Fatal("fences skipped, and 120 crashes with concurrent appenders found no violation")
	} else {
		t.Logf("found: %v", err)
	}
}

// concurrentCrashes runs the crashes of TestCrashConcurrentAppenders and
// returns the records acknowledged and kept, or the first violation.
func concurrentCrashes(seeds int, faults Faults) (acked, kept int, _ error) {
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		mode := wal.PersistCacheFlush
		if seed%3 == 0 {
			mode = wal.PersistMsync
		}
		sim := New(seed, 0xc0c0)
		opts := &wal.Options{SegmentSize: 1 << 20, Persist: mode, Media: sim, InFlightBound: 16 << 10}
		l, err := wal.Open(logDir, opts)
		if err != nil {
			return 0, 0, err
		}
		sim.SetFaults(faults)
		rng := rand.New(rand.NewPCG(seed, 3))
		sim.CrashAt(sim.Events() + 1 + rng.IntN(400))
		o := newOracle(1)
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(g)))
				for n := 0; n < 30; n++ {
					k := 1
					if r.IntN(4) == 0 {
						k = 2 + r.IntN(3)
					}
					recs := make([][]byte, k)
					for i := range recs {
						recs[i] = fmt.Appendf(nil, "g%d n%d i%d %s", g, n, i, make([]byte, r.IntN(3000)))
					}
					var idx uint64
					var err error
					if k == 1 {
						idx, err = l.Append(recs[0])
					} else {
						idx, err = l.AppendBatch(recs)
					}
					if err != nil {
						errs <- err
						return
					}
					ok := !sim.Crashed() // returned before the crash: must survive it
					mu.Lock()
					o.appended(idx, recs, k > 1, ok)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return 0, 0, fmt.Errorf("seed %d: append: %w", seed, err)
		}
		if err := l.Close(); err != nil {
			return 0, 0, err
		}
		img := sim.Image()
		if img == nil {
			continue
		}
		l, err = wal.Open(logDir, &wal.Options{SegmentSize: 1 << 20, Persist: mode, Media: img, InFlightBound: 16 << 10})
		if err != nil {
			return 0, 0, fmt.Errorf("seed %d %v: recovery: %w", seed, mode, err)
		}
		img.SetFaults(faults)
		if err := o.check(l); err != nil {
			l.Close()
			return 0, 0, fmt.Errorf("seed %d %v: %w", seed, mode, err)
		}
		kept += int(l.LastIndex())
		for _, a := range o.acked {
			if a {
				acked++
			}
		}
		l.Close()
	}
	return acked, kept, nil
}
