package fuzz

import (
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"testing"

	"github.com/pmwal/wal"
)

const logDir = "/sim/log"

// workload describes one crash test: a seed for the operations and the
// simulator, the event at which the first and second crash happen, and the
// persistence mode.
type workload struct {
	seed     uint64
	crash1   int // event of the first crash, counted from Open
	crash2   int // event of the second crash, counted from the reopen
	ops      int // operations before each crash
	mode     wal.Persist
	bound    int64
	faults   Faults
	truncate bool
	recycle  bool   // big records and frequent TruncateFront: segments are emptied and reused
	opBytes  []byte // when set, operations come from these bytes (fuzzing)
}

func (w workload) options(m wal.Media) *wal.Options {
	o := &wal.Options{SegmentSize: 1 << 20, Persist: w.mode, Media: m, InFlightBound: w.bound}
	if w.truncate || w.recycle {
		// Truncations empty segments: reuse them, so that crashes land in
		// the middle of recycling too, and a stale record of a reused file
		// (whose payload differs from any new one's) would be caught.
		o.RecycleSegments = 2
	}
	return o
}

// nextOp draws one operation: a record size and a batch length (1: a
// single Append).
type opSource struct {
	rng      *rand.Rand
	bytes    []byte
	truncate bool // mix truncations into the operations
	recycle  bool // big records, and TruncateFront near the end often
}

// truncation draws, now and then, a truncation to make instead of an
// append: kind 'b' (TruncateBack) or 'f' (TruncateFront), and a fraction
// of the log at which to cut.
func (s *opSource) truncation() (kind byte, frac float64) {
	if s.recycle {
		if s.rng.IntN(8) == 0 {
			return 'f', 0.6 + 0.4*s.rng.Float64()
		}
		return 0, 0
	}
	if s.bytes != nil || !s.truncate {
		return 0, 0
	}
	switch r := s.rng.IntN(100); {
	case r < 4:
		return 'b', s.rng.Float64()
	case r < 7:
		return 'f', s.rng.Float64() * 1.1
	}
	return 0, 0
}

func (s *opSource) next() (size, batch int, ok bool) {
	if s.bytes != nil {
		if len(s.bytes) < 2 {
			return 0, 0, false
		}
		b0, b1 := s.bytes[0], s.bytes[1]
		s.bytes = s.bytes[2:]
		size = int(b1) * (1 + int(b0>>5)) * 3 // up to ~6 KiB, so records cross lines, pages and segments
		batch = 1 + int(b0&7)
		if batch > 5 {
			batch = 1
		}
		return size, batch, true
	}
	if s.recycle {
		return 50000 + s.rng.IntN(150000), 1 + s.rng.IntN(2), true
	}
	switch r := s.rng.IntN(10); {
	case r < 6:
		size = s.rng.IntN(200)
	case r < 9:
		size = s.rng.IntN(2000)
	default:
		size = s.rng.IntN(40000)
	}
	batch = 1
	if s.rng.IntN(4) == 0 {
		batch = 2 + s.rng.IntN(5)
	}
	return size, batch, true
}

// payload is deterministic in (life, n) so that every record is unique.
func payload(life, n, size int) []byte {
	p := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(life), uint64(n)))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// drive runs operations on l until ops are done or the simulator crashed,
// telling the oracle what was appended and acknowledged.
func drive(l *wal.Log, sim *Sim, o *oracle, src *opSource, life, ops int) error {
	for n := 0; n < ops; n++ {
		if kind, frac := src.truncation(); kind != 0 {
			first, last := l.FirstIndex(), l.LastIndex()
			at := first + uint64(frac*float64(last+1-first))
			var err error
			if kind == 'b' {
				at = max(at, first) - 1 // TruncateBack(first-1) empties the log
				err = l.TruncateBack(at)
				o.truncatedBack(at, !sim.Crashed())
			} else {
				err = l.TruncateFront(at)
				o.truncatedFront(at, !sim.Crashed())
			}
			if err != nil {
				return fmt.Errorf("truncate %c %d: %w", kind, at, err)
			}
			if sim.Crashed() {
				return nil
			}
			continue
		}
		size, batch, ok := src.next()
		if !ok {
			return nil
		}
		next := l.LastIndex() + 1
		if batch == 1 {
			p := payload(life, n, size)
			idx, err := l.Append(p)
			if err != nil {
				return fmt.Errorf("append: %w", err)
			}
			if idx != next {
				return fmt.Errorf("append got index %d, want %d", idx, next)
			}
			o.appended(idx, [][]byte{p}, false, !sim.Crashed())
		} else {
			recs := make([][]byte, batch)
			for i := range recs {
				recs[i] = payload(life, n*8+i, size/batch)
			}
			idx, err := l.AppendBatch(recs)
			if err != nil {
				return fmt.Errorf("append batch: %w", err)
			}
			if idx != next {
				return fmt.Errorf("batch got index %d, want %d", idx, next)
			}
			o.appended(idx, recs, true, !sim.Crashed())
		}
		if sim.Crashed() {
			return nil
		}
	}
	return nil
}

// run performs the workload: open, append, crash; recover and check;
// append more, crash again; recover and check. It returns the number of
// crashes simulated (0, 1 or 2: a crash point past the end of the workload
// does not happen) and the first violation.
func (w workload) run() (crashes int, err error) {
	sim := New(w.seed, 0x5eed)
	src := &opSource{rng: rand.New(rand.NewPCG(w.seed, 7)), bytes: w.opBytes, truncate: w.truncate, recycle: w.recycle}
	l, err := wal.Open(logDir, w.options(sim))
	if err != nil {
		return 0, fmt.Errorf("open: %w", err)
	}
	sim.SetFaults(w.faults) // broken from here on: the log's own set-up is sound
	sim.CrashAt(sim.Events() + w.crash1)
	o := newOracle(1)
	if err := drive(l, sim, o, src, 1, w.ops); err != nil {
		l.Close()
		return 0, err
	}
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("close: %w", err)
	}
	img := sim.Image()
	if img == nil {
		return 0, nil
	}
	crashes++
	l, err = wal.Open(logDir, w.options(img))
	if err != nil {
		return crashes, fmt.Errorf("recovery after crash 1 at event %d: %w", w.crash1, err)
	}
	img.SetFaults(w.faults)
	if err := o.check(l); err != nil {
		l.Close()
		return crashes, fmt.Errorf("after crash 1 at event %d: %w", w.crash1, err)
	}
	// The double crash: more appends on the recovered log, crash again.
	o.rebase(l)
	img.CrashAt(img.Events() + w.crash2)
	if err := drive(l, img, o, src, 2, w.ops); err != nil {
		l.Close()
		return crashes, err
	}
	if err := l.Close(); err != nil {
		return crashes, fmt.Errorf("close: %w", err)
	}
	img2 := img.Image()
	if img2 == nil {
		return crashes, nil
	}
	crashes++
	l, err = wal.Open(logDir, w.options(img2))
	if err != nil {
		return crashes, fmt.Errorf("recovery after crash 2 at event %d: %w", w.crash2, err)
	}
	defer l.Close()
	if err := o.check(l); err != nil {
		return crashes, fmt.Errorf("after crash 2 at event %d: %w", w.crash2, err)
	}
	return crashes, nil
}

// events counts the persistence events of a workload's first life, run
// without a crash: its crash points.
func (w workload) events() (int, error) {
	sim := New(w.seed, 0x5eed)
	src := &opSource{rng: rand.New(rand.NewPCG(w.seed, 7)), bytes: w.opBytes, truncate: w.truncate, recycle: w.recycle}
	l, err := wal.Open(logDir, w.options(sim))
	if err != nil {
		return 0, err
	}
	start := sim.Events()
	err = drive(l, sim, newOracle(1), src, 1, w.ops)
	l.Close()
	return sim.Events() - start, err
}

// sweep runs every crash point of each seed's workload, each followed by a
// second crash drawn from the seed, and returns the crashes simulated.
func sweep(t *testing.T, seeds []uint64, ops int, mode wal.Persist, faults Faults) (int, error) {
	total := 0
	for _, seed := range seeds {
		// Every other seed mixes truncations into its operations.
		w := workload{seed: seed, ops: ops, mode: mode, bound: 4096, faults: faults, truncate: seed%2 == 1}
		span, err := w.events()
		if err != nil {
			return total, fmt.Errorf("seed %d: dry run: %w", seed, err)
		}
		r := rand.New(rand.NewPCG(seed, 99))
		for c := 1; c <= span; c++ {
			w.crash1, w.crash2 = c, 1+r.IntN(span)
			n, err := w.run()
			total += n
			if err != nil {
				return total, fmt.Errorf("seed %d crash1 %d crash2 %d mode %v: %w", seed, w.crash1, w.crash2, mode, err)
			}
		}
	}
	return total, nil
}

// TestCrashSweep is the deterministic sweep CI runs: every crash point of
// several seeded workloads, on both persistence paths, each followed by
// recovery, the oracle, more appends, a second crash and the oracle again.
func TestCrashSweep(t *testing.T) {
	seeds := map[wal.Persist]int{wal.PersistCacheFlush: 30, wal.PersistMsync: 50}
	want := 10000
	if raceEnabled || testing.Short() {
		seeds = map[wal.Persist]int{wal.PersistCacheFlush: 3, wal.PersistMsync: 5}
		want = 500
	}
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	total := 0
	for _, mode := range []wal.Persist{wal.PersistCacheFlush, wal.PersistMsync} {
		var ss []uint64
		for i := 0; i < seeds[mode]; i++ {
			ss = append(ss, uint64(1000+i))
		}
		n, err := sweep(t, ss, 30, mode, Faults{})
		total += n
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%v: %d simulated crashes from %d seeds", mode, n, len(ss))
	}
	t.Logf("%d simulated crashes, all recovered and checked; %d with a truncation in flight", total, inFlightTruncations.Load())
	if inFlightTruncations.Load() == 0 {
		t.Fatal("no crash hit a truncation in flight")
	}
	if total < want {
		t.Fatalf("only %d crashes happened, want %d", total, want)
	}
}

// The harness has teeth: with persistence deliberately broken, the sweep
// must find a violation.
func TestCrashSweepFindsBrokenPersistence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   wal.Persist
		faults Faults
		nt     string
	}{
		{"skip fence", wal.PersistCacheFlush, Faults{SkipFence: true}, "off"},
		{"skip fence, non-temporal stores", wal.PersistCacheFlush, Faults{SkipFence: true}, "0"},
		{"last line unflushed", wal.PersistCacheFlush, Faults{DropLastLine: true}, "off"},
		{"last line unflushed, non-temporal stores", wal.PersistCacheFlush, Faults{DropLastLine: true}, "0"},
		{"msync skipped", wal.PersistMsync, Faults{SkipSync: true}, "off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WAL_NT_THRESHOLD", tc.nt)
			n, err := sweep(t, []uint64{1, 2, 3, 4, 5, 6, 7, 8}, 30, tc.mode, tc.faults)
			if err == nil {
				t.Fatalf("%d crashes with broken persistence and no violation found", n)
			}
			t.Logf("found after %d crashes: %v", n, err)
		})
	}
}
