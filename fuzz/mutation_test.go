package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/pmwal/wal"
)

// Tests written by mutation testing of the durability code: each kills a
// mutant the other crash tests let through.

// TestMutationMsyncRolloverConcurrent: with msync, concurrent appenders
// cross many segment boundaries, then the power fails. Every append that
// returned must survive. A rollover that activates the next segment while
// records of the active one are written but not yet synced (a sync would
// then cover only the new segment) loses acknowledged records; the other
// concurrent crash test never fills a segment, so only this one sees it.
func TestMutationMsyncRolloverConcurrent(t *testing.T) {
	if raceEnabled {
		t.Skip("the crash image reads memory other goroutines store into")
	}
	for seed := uint64(1); seed <= 6; seed++ {
		sim := New(seed, 0x7011)
		opts := func(m wal.Media) *wal.Options {
			return &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistMsync, Media: m}
		}
		l, err := wal.Open(logDir, opts(sim))
		if err != nil {
			t.Fatal(err)
		}
		o := newOracle(1)
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range 50 {
					rec := fmt.Appendf(nil, "g%d n%d %s", g, n, make([]byte, 6000+(n*7919+g*104729)%20000))
					idx, err := l.Append(rec)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					o.appended(idx, [][]byte{rec}, false, true)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatalf("seed %d: append: %v", seed, err)
		}
		if got := l.Stats().Segments; got < 3 {
			t.Fatalf("seed %d: only %d segments: the test exercised no rollover", seed, got)
		}
		sim.Crash() // every append has returned: all of it must survive
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = wal.Open(logDir, opts(sim.Image()))
		if err != nil {
			t.Fatalf("seed %d: recovery: %v", seed, err)
		}
		err = o.check(l)
		l.Close()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// TestMutationTruncateBackAcrossSegmentsCrash: TruncateBack removes
// several later segment files, and the power fails right after it
// returned. The log must hold exactly the records up to the cut: a
// removal left unsynced may be undone by the crash, bringing back an
// activated segment after the cut (a gap, or records that were cut), so
// each removal must be durable before the next.
func TestMutationTruncateBackAcrossSegmentsCrash(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		sim := New(seed, 0xc07)
		opts := func(m wal.Media) *wal.Options {
			return &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: m}
		}
		l, err := wal.Open(logDir, opts(sim))
		if err != nil {
			t.Fatal(err)
		}
		o := newOracle(1)
		for n := 0; l.Stats().Segments < 4; n++ {
			rec := payload(int(seed), n, 30000)
			idx, err := l.Append(rec)
			if err != nil {
				t.Fatal(err)
			}
			o.appended(idx, [][]byte{rec}, false, true)
		}
		cut := uint64(10) // in the first segment
		if err := l.TruncateBack(cut); err != nil {
			t.Fatal(err)
		}
		o.truncatedBack(cut, true)
		sim.Crash()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = wal.Open(logDir, opts(sim.Image()))
		if err != nil {
			t.Fatalf("seed %d: recovery after TruncateBack(%d): %v", seed, cut, err)
		}
		err = o.check(l)
		last := l.LastIndex()
		l.Close()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if last != cut {
			t.Fatalf("seed %d: LastIndex %d after TruncateBack(%d) returned", seed, last, cut)
		}
	}
}

// TestMutationCrashPlainAndNTStores: a crash at every event of appends
// whose records are written with plain stores (made durable by cache-line
// write-back) and, within one batch, mixed with non-temporal stores. The
// default non-temporal threshold depends on the CPU (0 on AMD: every
// record non-temporal), so the other crash tests may never exercise the
// write-back of plain-stored records; here the threshold is set.
func TestMutationCrashPlainAndNTStores(t *testing.T) {
	for _, nt := range []string{"off", "256"} {
		t.Run("WAL_NT_THRESHOLD="+nt, func(t *testing.T) {
			t.Setenv("WAL_NT_THRESHOLD", nt)
			crashes, err := mixedStoreCrashes(30)
			if err != nil {
				t.Fatal(err)
			}
			if crashes < 50 {
				t.Fatalf("only %d crashes simulated", crashes)
			}
		})
	}
}

// mixedStoreCrashes appends ops operations (a small record, then a batch
// of small, large, small), crashing at each event in turn, and checks the
// recovered log against the oracle. It returns the crashes simulated.
func mixedStoreCrashes(ops int) (int, error) {
	opts := func(m wal.Media) *wal.Options {
		return &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: m}
	}
	drive := func(l *wal.Log, sim *Sim, o *oracle) error {
		for n := 0; n < ops; n++ {
			var recs [][]byte
			if n%2 == 0 {
				recs = [][]byte{payload(3, n*4, 40+n*13)}
			} else {
				recs = [][]byte{payload(3, n*4, 100+n), payload(3, n*4+1, 3000+n*8), payload(3, n*4+2, 60+n)}
			}
			var idx uint64
			var err error
			if len(recs) == 1 {
				idx, err = l.Append(recs[0])
			} else {
				idx, err = l.AppendBatch(recs)
			}
			if err != nil {
				return err
			}
			o.appended(idx, recs, len(recs) > 1, !sim.Crashed())
			if sim.Crashed() {
				return nil
			}
		}
		return nil
	}
	dry := New(1, 2)
	l, err := wal.Open(logDir, opts(dry))
	if err != nil {
		return 0, err
	}
	start := dry.Events()
	if err := drive(l, dry, newOracle(1)); err != nil {
		return 0, err
	}
	l.Close()
	span := dry.Events() - start
	crashes := 0
	for c := 1; c <= span; c++ {
		sim := New(uint64(c), 2)
		l, err := wal.Open(logDir, opts(sim))
		if err != nil {
			return crashes, err
		}
		sim.CrashAt(sim.Events() + c)
		o := newOracle(1)
		if err := drive(l, sim, o); err != nil {
			l.Close()
			return crashes, err
		}
		l.Close()
		img := sim.Image()
		if img == nil {
			continue
		}
		crashes++
		l, err = wal.Open(logDir, opts(img))
		if err != nil {
			return crashes, fmt.Errorf("crash at event %d: recovery: %w", c, err)
		}
		err = o.check(l)
		l.Close()
		if err != nil {
			return crashes, fmt.Errorf("crash at event %d: %w", c, err)
		}
	}
	return crashes, nil
}

// crashOnReuse is a Sim that loses power right after the first rename of
// a recycled segment file to its segment name: the file must be durable,
// zeroed and with its new header, before that rename.
type crashOnReuse struct{ *Sim }

func (c crashOnReuse) Rename(oldname, newname string) error {
	err := c.Sim.Rename(oldname, newname)
	if err == nil && strings.HasSuffix(oldname, ".seg.tmp") && strings.HasSuffix(newname, ".seg") {
		c.Sim.Crash()
	}
	return err
}

// TestMutationCrashAfterSegmentReuse: a segment file emptied by
// TruncateFront is reused for a new segment, and the power fails just
// after it got its segment name. Recovery must find a clean unused segment
// there (not the old file's header or records) and every record.
func TestMutationCrashAfterSegmentReuse(t *testing.T) {
	for _, mode := range []wal.Persist{wal.PersistCacheFlush, wal.PersistMsync} {
		t.Run(mode.String(), func(t *testing.T) {
			sim := New(1, 0x4e05e)
			opts := func(m wal.Media) *wal.Options {
				return &wal.Options{SegmentSize: 1 << 20, Persist: mode, Media: m, RecycleSegments: 2}
			}
			l, err := wal.Open(logDir, opts(crashOnReuse{sim}))
			if err != nil {
				t.Fatal(err)
			}
			o := newOracle(1)
			for n := 0; !sim.Crashed() && n < 200; n++ {
				if l.Stats().Segments == 3 && l.FirstIndex() == 1 {
					first := l.LastIndex() - 2
					if err := l.TruncateFront(first); err != nil {
						t.Fatal(err)
					}
					o.truncatedFront(first, true)
				}
				rec := payload(9, n, 30000)
				idx, err := l.Append(rec)
				if err != nil {
					t.Fatal(err)
				}
				o.appended(idx, [][]byte{rec}, false, !sim.Crashed())
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			img := sim.Image()
			if img == nil {
				t.Fatal("no segment file was reused")
			}
			l, err = wal.Open(logDir, opts(img))
			if err != nil {
				t.Fatalf("recovery after a crash just after reusing a segment file: %v", err)
			}
			defer l.Close()
			if err := o.check(l); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// crashAfterCreate is a Sim that loses power just after the first segment
// file is created, before the log activates it.
type crashAfterCreate struct{ *Sim }

func (c crashAfterCreate) CreateSegment(name string, size int64, header []byte, perm fs.FileMode) error {
	err := c.Sim.CreateSegment(name, size, header, perm)
	c.Sim.Crash()
	return err
}

// TestMutationRemovedSegmentStaysRemoved: the power fails while a new log
// is made, leaving a segment file that was never activated. Reopened with
// another SegmentSize, recovery removes that file and activates a new
// segment numbered after it. Another crash must not bring the removed file
// back before the activated one (which recovery refuses as damage): the
// removal has to be durable before the log goes on.
func TestMutationRemovedSegmentStaysRemoved(t *testing.T) {
	opts := func(m wal.Media, size int64) *wal.Options {
		return &wal.Options{SegmentSize: size, Persist: wal.PersistCacheFlush, Media: m}
	}
	for seed := uint64(1); seed <= 20; seed++ {
		sim := New(seed, 0x5ba4e)
		l, err := wal.Open(logDir, opts(crashAfterCreate{sim}, 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		img := sim.Image()
		if img == nil {
			t.Fatal("no crash at the segment creation")
		}
		if l, err = wal.Open(logDir, opts(img, 2<<20)); err != nil {
			t.Fatalf("seed %d: first recovery: %v", seed, err)
		}
		o := newOracle(1)
		rec := payload(int(seed), 0, 1000)
		idx, err := l.Append(rec)
		if err != nil {
			t.Fatal(err)
		}
		o.appended(idx, [][]byte{rec}, false, true)
		img.Crash()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = wal.Open(logDir, opts(img.Image(), 2<<20))
		if err != nil {
			t.Fatalf("seed %d: second recovery: %v", seed, err)
		}
		err = o.check(l)
		l.Close()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// Record layout (FORMAT.md): records start at offset 128 of a segment
// file, one after another, each a 32-byte header and the payload padded to
// 8 bytes.
const (
	segHeaderBytes = 128
	recHeaderBytes = 32
)

func recBytes(n int) int { return recHeaderBytes + (n+7)&^7 }

func segPath(seq uint64) string { return logDir + "/" + segFile(seq) }

// TestMutationTornTailBoundEdge: a torn record followed by a complete one
// in the last segment. Ending exactly at the in-flight bound past the torn
// record, the complete one may have been in flight (the writer allows
// that): a torn tail, dropped. Its payload ending even one byte further,
// the writer could never have written it: corruption.
func TestMutationTornTailBoundEdge(t *testing.T) {
	const bound = 4096
	for _, tc := range []struct {
		name    string
		past    int // bytes the complete record's payload ends past the bound
		corrupt bool
	}{
		{"ends at the bound", 0, false},
		{"payload ends a byte past the bound", 1, true},
		{"ends a word past the bound", 8, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := New(1, 2)
			l, err := wal.Open(logDir, &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: sim, InFlightBound: bound})
			if err != nil {
				t.Fatal(err)
			}
			sizes := []int{200, 200, 200, 200, 200, 1000, bound + tc.past - recBytes(1000) - recHeaderBytes}
			var want [][]byte
			off := segHeaderBytes // of the record appended next
			torn := 0             // offset of record 6
			for i, n := range sizes {
				rec := payload(5, i, n)
				if _, err := l.Append(rec); err != nil {
					t.Fatal(err)
				}
				want = append(want, rec)
				if i == 5 {
					torn = off
				}
				off += recBytes(n)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if end := torn + recBytes(1000) + recHeaderBytes + sizes[6]; end != torn+bound+tc.past {
				t.Fatalf("record 7 ends at %d, want %d", end, torn+bound+tc.past)
			}
			b := sim.Bytes(segPath(1))
			if b == nil {
				t.Fatal("segment 1 missing or mapped")
			}
			b[torn+recHeaderBytes+500] ^= 0x40 // record 6 torn

			l, err = wal.Open(logDir, &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: sim})
			if tc.corrupt {
				if err == nil {
					l.Close()
					t.Fatalf("Open succeeded (LastIndex %d); want ErrCorrupt", l.LastIndex())
				}
				if !errors.Is(err, wal.ErrCorrupt) {
					t.Fatalf("Open: %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v, want the torn tail dropped", err)
			}
			defer l.Close()
			if last := l.LastIndex(); last != 5 {
				t.Fatalf("LastIndex %d, want 5", last)
			}
			for i := uint64(1); i <= 5; i++ {
				if got, err := l.Read(i); err != nil || !bytes.Equal(got, want[i-1]) {
					t.Fatalf("Read(%d): %v", i, err)
				}
			}
			if r := l.Recovery(); !r.TornTail || r.Repaired || r.DroppedRecords != 1 {
				t.Fatalf("Recovery() = %+v, want a torn tail with 1 dropped record", r)
			}
		})
	}
}

// TestMutationMisplacedRecord: a record whose checksum verifies lies in
// the slot of the next index (a copy of its predecessor). Recovery must
// not keep it under the wrong index: whatever Open does (refuse the log,
// or drop the tail from there), every record it keeps must read back as
// written.
func TestMutationMisplacedRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n, dup int // records (200 bytes each), index whose slot gets a copy of dup-1
	}{
		{"last segment", 20, 12},
		{"sealed segment", 12000, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := New(1, 2)
			opts := &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: sim}
			l, err := wal.Open(logDir, opts)
			if err != nil {
				t.Fatal(err)
			}
			var want [][]byte
			for i := range tc.n {
				rec := payload(6, i, 200)
				if _, err := l.Append(rec); err != nil {
					t.Fatal(err)
				}
				want = append(want, rec)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			b := sim.Bytes(segPath(1))
			if b == nil {
				t.Fatal("segment 1 missing or mapped")
			}
			size := recBytes(200)
			dst := segHeaderBytes + (tc.dup-1)*size
			copy(b[dst:dst+size], b[dst-size:dst])

			l, err = wal.Open(logDir, opts)
			if err != nil {
				if !errors.Is(err, wal.ErrCorrupt) {
					t.Fatalf("Open: %v, want success or ErrCorrupt", err)
				}
				return
			}
			defer l.Close()
			if last := l.LastIndex(); last >= uint64(tc.dup) {
				t.Fatalf("LastIndex %d: the misplaced record at %d was kept", last, tc.dup)
			}
			for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
				if got, err := l.Read(i); err != nil || !bytes.Equal(got, want[i-1]) {
					t.Fatalf("Read(%d): %v", i, err)
				}
			}
		})
	}
}
