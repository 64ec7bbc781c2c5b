package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rcPayload is record i's payload in life life: unique per (life, index),
// so that a stale record of an earlier life is never mistaken for a new one.
func rcPayload(life int, i uint64) []byte {
	return []byte(fmt.Sprintf("life %d record %d %s", life, i, strings.Repeat("r", int(i*7919%30000))))
}

func rcFiles(t *testing.T, dir string) (segs, frees int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		switch {
		case strings.HasSuffix(e.Name(), segSuffix):
			segs++
		case strings.HasSuffix(e.Name(), freeSuffix):
			frees++
		}
	}
	return segs, frees
}

// rcCheck reads every record of l and compares it with what life wrote.
func rcCheck(t *testing.T, l *Log, payload func(uint64) []byte) {
	t.Helper()
	it := l.Records(l.FirstIndex())
	n := l.FirstIndex()
	for idx, rec := range it.All() {
		if idx != n || !bytes.Equal(rec, payload(idx)) {
			t.Fatalf("record %d (want %d): %.40q, want %.40q", idx, n, rec, payload(idx))
		}
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if n != l.LastIndex()+1 {
		t.Fatalf("iterated to %d, LastIndex %d", n-1, l.LastIndex())
	}
}

// TestRecycleReusesEmptiedSegments: with RecycleSegments, a log kept short
// by TruncateFront makes its new segments from the files it emptied: the
// directory never holds more than the segments in use, the spare and the
// free files allowed, every record reads back as written (none of a
// file's earlier records shows through), across reopens; without it, no
// free file is kept.
func TestRecycleReusesEmptiedSegments(t *testing.T) {
	rtEnv(t)
	for _, mode := range []Persist{PersistCacheFlush, PersistMsync} {
		for _, keep := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("%v/keep %d", mode, keep), func(t *testing.T) {
				dir := rtDir(t)
				o := &Options{SegmentSize: 1 << 20, Persist: mode, RecycleSegments: keep}
				l := rtOpen(t, dir, o)
				pay := func(i uint64) []byte { return rcPayload(1, i) }
				maxSegs := 0
				for i := uint64(1); i <= 1500; i++ {
					if _, err := l.Append(pay(i)); err != nil {
						t.Fatal(err)
					}
					if i%100 == 0 {
						if err := l.TruncateFront(i - 60); err != nil {
							t.Fatal(err)
						}
						st := l.Stats()
						segs, frees := rcFiles(t, dir)
						maxSegs = max(maxSegs, st.Segments)
						// (The background preparation may take a free file
						// between the two looks.)
						if frees > keep || st.FreeSegments > keep || segs > st.Segments+2 {
							t.Fatalf("after %d: %d segment files and %d free files; stats %d segments, %d free", i, segs, frees, st.Segments, st.FreeSegments)
						}
					}
				}
				st := l.Stats()
				if keep > 0 && st.Recycled < 10 {
					t.Fatalf("only %d segments made from free files", st.Recycled)
				}
				if keep == 0 && (st.Recycled != 0 || st.FreeSegments != 0) {
					t.Fatalf("recycling off, yet %d recycled and %d free", st.Recycled, st.FreeSegments)
				}
				rcCheck(t, l, pay)
				rtClose(t, l)

				// Reopen: the free files are adopted (and perhaps one
				// already taken by the preparation of the next segment).
				_, frees := rcFiles(t, dir)
				l = rtOpen(t, dir, o)
				benchSettle(l) // the preparation of the next segment has finished
				if st := l.Stats(); st.FreeSegments+int(st.Recycled) != min(frees, keep) {
					t.Fatalf("%d free files on disk, limit %d; after reopen %d free and %d recycled", frees, keep, st.FreeSegments, st.Recycled)
				}
				rcCheck(t, l, pay)
				for i := l.LastIndex() + 1; i <= 2500; i++ {
					if _, err := l.Append(pay(i)); err != nil {
						t.Fatal(err)
					}
					if i%100 == 0 {
						if err := l.TruncateFront(i - 60); err != nil {
							t.Fatal(err)
						}
					}
				}
				rcCheck(t, l, pay)
				if keep > 0 && l.Stats().Recycled == 0 {
					t.Fatal("nothing recycled after the reopen")
				}
				rtClose(t, l)

				// Opened without recycling, the free files go.
				l = rtOpen(t, dir, &Options{SegmentSize: 1 << 20, Persist: mode})
				if _, frees := rcFiles(t, dir); frees != 0 {
					t.Fatalf("%d free files left with RecycleSegments 0", frees)
				}
				rcCheck(t, l, pay)
			})
		}
	}
}

// TestRecycleStaleRecordsNeverReturn: a file reused after TruncateBack and
// TruncateFront brought the index numbers back down to where its stale
// records lie: none of them may come back, after a clean reopen or after
// a torn tail was dropped in the reused segment.
func TestRecycleStaleRecordsNeverReturn(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	o := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, RecycleSegments: 4}
	l := rtOpen(t, dir, o)
	// Life 1: fill several segments.
	for i := uint64(1); i <= 300; i++ {
		if _, err := l.Append(rcPayload(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	// Empty the log and restart numbering at 2: life 2 uses again the
	// indexes of life 1's records, which lie in the files it will reuse.
	if err := l.TruncateBack(0); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateFront(2); err != nil {
		t.Fatal(err)
	}
	life2 := func(i uint64) []byte { return rcPayload(2, i) }
	for i := uint64(2); i <= 600; i++ {
		if _, err := l.Append(life2(i)); err != nil {
			t.Fatal(err)
		}
		if i%150 == 0 {
			if err := l.TruncateFront(i - 20); err != nil {
				t.Fatal(err)
			}
		}
	}
	if l.Stats().Recycled == 0 {
		t.Fatal("no file was reused")
	}
	rcCheck(t, l, life2)
	last := l.LastIndex()
	l.mu.Lock()
	active := l.segs[len(l.segs)-1]
	r := rtRec{seq: active.seq, off: int(active.offs.At(active.offs.Len() - 1))}
	l.mu.Unlock()
	reused := l.Stats().Recycled > 0
	rtClose(t, l)
	if !reused {
		t.Fatal("setup: no reuse")
	}

	// Tear the last record of the active segment and reopen: the torn
	// tail goes, and nothing stale after it comes back.
	rtDamageRecord(t, dir, r, func(b []byte, r rtRec) { b[r.off+recHeaderSize] ^= 1 })
	l = rtOpen(t, dir, o)
	if l.LastIndex() != last-1 || !l.Recovery().TornTail {
		t.Fatalf("after tearing record %d: LastIndex %d, report %+v", last, l.LastIndex(), l.Recovery())
	}
	rcCheck(t, l, life2)
	for i := last; i <= last+50; i++ {
		if _, err := l.Append(life2(i)); err != nil {
			t.Fatal(err)
		}
	}
	rcCheck(t, l, life2)
}

// TestRecyclePinnedSegmentIsNotReused: a segment an iterator is still
// inside when TruncateFront empties it is removed, not reused, so the
// records the iterator borrowed stay intact while new segments are made.
func TestRecyclePinnedSegmentIsNotReused(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	o := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, RecycleSegments: 8}
	l := rtOpen(t, dir, o)
	pay := func(i uint64) []byte { return rcPayload(1, i) }
	for i := uint64(1); i <= 400; i++ {
		if _, err := l.Append(pay(i)); err != nil {
			t.Fatal(err)
		}
	}
	it := l.Records(1)
	for idx, rec := range it.All() {
		if idx != 1 {
			t.Fatalf("first record %d", idx)
		}
		// Segment 1 is pinned by this iteration: empty it, and churn
		// through enough segments to reuse every free file.
		if err := l.TruncateFront(300); err != nil {
			t.Fatal(err)
		}
		for i := uint64(401); i <= 1400; i++ {
			if _, err := l.Append(pay(i)); err != nil {
				t.Fatal(err)
			}
			if i%100 == 0 {
				if err := l.TruncateFront(i - 50); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !bytes.Equal(rec, pay(1)) {
			t.Fatalf("the borrowed record changed under the iterator: %.40q", rec)
		}
		if _, err := os.Stat(filepath.Join(dir, "00000000000000000001"+freeSuffix)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the pinned segment's file was kept for reuse: %v", err)
		}
		break
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if l.Stats().Recycled == 0 {
		t.Fatal("nothing was recycled")
	}
	rcCheck(t, l, pay)
}

// TestRecycleFreeFilesAtOpen: free files beyond the limit or of another
// size are removed by a writer's Open; a read-only Open leaves them.
func TestRecycleFreeFilesAtOpen(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	l := rtOpen(t, dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
	l.Append([]byte("x"))
	rtClose(t, l)
	for i, size := range []int{1 << 20, 1 << 20, 1 << 20, 2 << 20, 100} {
		p := filepath.Join(dir, fmt.Sprintf("%020d%s", 100+i, freeSuffix))
		if err := os.WriteFile(p, bytes.Repeat([]byte{0xAB}, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files := rtSnapshot(t, dir)
	ro := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, RecycleSegments: 2, ReadOnly: true}
	rtClose(t, rtOpen(t, dir, ro))
	rtSameFiles(t, dir, files, "read-only Open")

	l = rtOpen(t, dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, RecycleSegments: 2})
	if _, frees := rcFiles(t, dir); frees != 2 || l.Stats().FreeSegments != 2 {
		t.Fatalf("%d free files kept (stats %d), want 2", frees, l.Stats().FreeSegments)
	}
	// The garbage-filled free files become clean segments.
	for i := uint64(2); i <= 150; i++ {
		if _, err := l.Append(rcPayload(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	if l.Stats().Recycled == 0 {
		t.Fatal("the free files were not used")
	}
	rtClose(t, l)
	l = rtOpen(t, dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, RecycleSegments: 2})
	if rep := l.Recovery(); rep.TornTail || rep.Repaired {
		t.Fatalf("a reused file left something for recovery to drop: %+v", rep)
	}
	rcCheck(t, l, func(i uint64) []byte {
		if i == 1 {
			return []byte("x")
		}
		return rcPayload(1, i)
	})
	if _, err := Open(t.TempDir(), &Options{RecycleSegments: -1}); err == nil {
		t.Fatal("RecycleSegments -1 accepted")
	}
}
