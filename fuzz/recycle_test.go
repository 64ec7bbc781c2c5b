package fuzz

import (
	"math/rand/v2"
	"testing"

	"github.com/pmwal/wal"
)

// TestCrashSweepRecycling crashes at every persistence event of workloads
// that keep emptying segments with TruncateFront and reusing their files
// (Options.RecycleSegments): in the middle of a file's renaming to free,
// its zeroing, its new header and its renaming back. Each record's payload
// is unique, so a stale record of a file's earlier life that recovery took
// for a new one would fail the oracle.
func TestCrashSweepRecycling(t *testing.T) {
	// Every crash point costs tens of milliseconds here (each image holds
	// several segment files): the full sweep takes two seeds on the cache
	// flush path and one with msync; under -race or -short every tenth
	// crash point of one seed each.
	seeds := map[wal.Persist]uint64{wal.PersistCacheFlush: 2, wal.PersistMsync: 1}
	stride := 1
	if raceEnabled || testing.Short() {
		seeds = map[wal.Persist]uint64{wal.PersistCacheFlush: 1, wal.PersistMsync: 1}
		stride = 10
	}
	total := 0
	for _, mode := range []wal.Persist{wal.PersistCacheFlush, wal.PersistMsync} {
		for seed := uint64(1); seed <= seeds[mode]; seed++ {
			w := workload{seed: 500 + seed, ops: 60, mode: mode, bound: 4096, recycle: true}
			// A dry run: the crash points, and proof that files are reused.
			sim := New(w.seed, 0x5eed)
			l, err := wal.Open(logDir, w.options(sim))
			if err != nil {
				t.Fatal(err)
			}
			start := sim.Events()
			src := &opSource{rng: rand.New(rand.NewPCG(w.seed, 7)), recycle: true}
			if err := drive(l, sim, newOracle(1), src, 1, w.ops); err != nil {
				t.Fatal(err)
			}
			st := l.Stats()
			span := sim.Events() - start
			l.Close()
			if st.Recycled < 2 {
				t.Fatalf("seed %d: only %d segments reused in the dry run", w.seed, st.Recycled)
			}
			r := rand.New(rand.NewPCG(w.seed, 99))
			for c := 1; c <= span; c += stride {
				w.crash1, w.crash2 = c, 1+r.IntN(span)
				n, err := w.run()
				total += n
				if err != nil {
					t.Fatalf("seed %d crash1 %d crash2 %d mode %v: %v", w.seed, w.crash1, w.crash2, mode, err)
				}
			}
			t.Logf("%v seed %d: %d segments reused, %d crash points", mode, w.seed, st.Recycled, span)
		}
	}
	t.Logf("%d simulated crashes with segment reuse, all recovered and checked", total)
}
