package fuzz

import (
	"bytes"
	"testing"

	"github.com/pmwal/wal"
)

// TestReview2FrontTruncGap: under the Media contract (and the simulator),
// a removal is durable only after SyncDir, each independently. TruncateFront
// once removed every emptied segment file and synced the directory at the
// end, so a crash before that sync could bring back an older emptied
// segment while a newer one stayed gone: a gap in the sequence numbers,
// which recovery refuses with ErrCorrupt, although no acknowledged record
// was touched. Every crash point of a TruncateFront that empties four
// segments must recover to the same log.
func TestReview2FrontTruncGap(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	run := func(seed uint64, crash int) (span [2]int, err error) {
		sim := New(seed, 3)
		opts := &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: sim}
		l, err := wal.Open(logDir, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 24; i++ { // ~5 records of 200 KB per segment: 5 segments
			if _, err := l.Append(bytes.Repeat([]byte{byte(i + 1)}, 200_000)); err != nil {
				t.Fatal(err)
			}
		}
		span[0] = sim.Events()
		if crash > 0 {
			sim.CrashAt(crash)
		}
		if err := l.TruncateFront(l.LastIndex()); err != nil {
			t.Fatal(err)
		}
		span[1] = sim.Events()
		l.Close()
		if crash == 0 {
			return span, nil
		}
		img := sim.Image()
		if img == nil {
			return span, nil
		}
		o2 := *opts
		o2.Media = img
		l2, err := wal.Open(logDir, &o2)
		if err != nil {
			return span, err
		}
		if l2.LastIndex() != 24 {
			err = nil
			t.Errorf("LastIndex %d after recovery, want 24", l2.LastIndex())
		}
		l2.Close()
		return span, nil
	}
	span, _ := run(1, 0)
	t.Logf("TruncateFront spans events %d..%d", span[0]+1, span[1])
	seeds := uint64(40)
	if raceEnabled || testing.Short() {
		seeds = 4 // each run builds a 5 MiB log in the simulator: slow under -race
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		for c := span[0] + 1; c <= span[1]; c++ {
			if _, err := run(seed, c); err != nil {
				t.Fatalf("seed %d, crash at event %d (TruncateFront is events %d..%d): recovery failed: %v",
					seed, c, span[0]+1, span[1], err)
			}
		}
	}
}
