package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Review 3 (recovery and crash consistency). Helpers are prefixed r3r.

// r3rInFlight emulates appenders of l at a crash: the first reservation is
// made and never written (its appender stalled before its stores), and the
// following ones are reserved and written completely (stored, flushed and
// fenced), as concurrent appenders do, but never committed. It returns the
// index of the stalled record.
func r3rInFlight(t *testing.T, l *Log, sizes []int) uint64 {
	t.Helper()
	var stalled uint64
	for i, n := range sizes {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(i + j)
		}
		seg, off, first, _, err := l.reserve(recSize(n), data, nil)
		if err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
		if i == 0 {
			stalled = first
			continue
		}
		if _, err := l.writeRecords(seg, off, first, data, nil); err != nil {
			t.Fatal(err)
		}
	}
	r3rAbandon(l)
	return stalled
}

// r3rAbandon forgets the appends in flight that a test made with reserve
// and never committed: they stand for appenders that died in the crash
// being emulated, and Close would otherwise wait for them for ever.
func r3rAbandon(l *Log) {
	l.mu.Lock()
	l.inFlight = 0
	l.mu.Unlock()
}

// TestReview3BoundRaisedOnReopen: the in-flight bound a writer keeps is
// Options.InFlightBound of the Open in progress (reserve), while recovery
// judges the last segment by the bound in its header, which is the
// InFlightBound of the Open that created the file. A log created with the
// minimum bound and reopened with the default one: appenders in flight
// within the new bound, the first of them stalled at the crash. That is a
// torn tail (nothing after the durable point was acknowledged), yet Open
// refuses the log with ErrCorrupt.
func TestReview3BoundRaisedOnReopen(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	o := rtOpts(false)
	o.InFlightBound = 4096
	l := rtOpen(t, dir, o)
	want := [][]byte{nil}
	rtAppend(t, l, &want, []byte("acknowledged"))
	rtClose(t, l)

	o2 := rtOpts(false) // default bound, 1 MiB
	l = rtOpen(t, dir, o2)
	if l.segs[len(l.segs)-1].hdr.bound != 4096 {
		t.Fatalf("active segment bound %d, want the creating Open's 4096", l.segs[len(l.segs)-1].hdr.bound)
	}
	// 1 stalled record, then 16 KiB of records, reserved and written by
	// concurrent appenders: within the new Open's 1 MiB bound, but not
	// within the 4 KiB this segment's recovery will judge by. The writer
	// must hold back at the segment's bound.
	sizes := []int{100}
	for range 16 {
		sizes = append(sizes, 1000)
	}
	made := make(chan int, 1)
	go func() {
		n := 0
		defer func() { made <- n }()
		for i, size := range sizes {
			data := bytes.Repeat([]byte{byte(i + 1)}, size)
			seg, off, first, _, err := l.reserve(recSize(size), data, nil)
			if err != nil {
				return // ErrClosed, once the test closes the log
			}
			n++
			if i == 0 {
				continue // the stalled appender
			}
			if _, err := l.writeRecords(seg, off, first, data, nil); err != nil {
				return
			}
		}
	}()
	// Wait until the reservations stop: all made, or the writer waits.
	last, still := uint64(0), 0
	for still < 10 {
		time.Sleep(10 * time.Millisecond)
		l.mu.Lock()
		rs := l.rseq
		l.mu.Unlock()
		if rs == last {
			still++
		} else {
			last, still = rs, 0
		}
	}
	benchSettle(l)              // no segment preparation under way while the files are copied
	files := rtSnapshot(t, dir) // tmpfs, cache-flush: the files are the media
	r3rAbandon(l)
	l.Close()
	if n := <-made; n == len(sizes) {
		t.Errorf("all %d reservations went through: the writer kept the new Open's bound, not the segment's 4096 bytes", n)
	}

	crash := rtMaterialize(t, files)
	l2, err := Open(crash, rtOpts(false))
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open of a legitimate crash state (torn tail within the writer's in-flight bound): %v", err)
		}
		t.Fatal(err)
	}
	defer l2.Close()
	if err := rtVerify(l2, want, 1); err != nil {
		t.Fatal(err)
	}
}

// TestReview3CutIntentOutlivesRepair: a TruncateBack(50) interrupted right
// after its META write (META: cut flag, cut 50), and segment 1's header
// damaged. Open with RepairCorruption removes every segment (the damaged
// first one, so nothing after it can be kept) and starts an empty log, but
// recover() redoes the cut only when segments remain (m.cutting &&
// len(segs) > 0), so META keeps the cut flag. Records appended and
// acknowledged afterwards are cut away by the next Open's redo.
func TestReview3CutIntentOutlivesRepair(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	l := rtOpen(t, dir, rtOpts(false))
	for i := range 100 {
		if _, err := l.Append([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	rtClose(t, l)
	// The first step of TruncateBack(50): its intent is durable.
	var mb [metaSize]byte
	encodeMeta(mb[:], meta{first: 1, cut: 50, cutting: true})
	if err := os.WriteFile(filepath.Join(dir, metaName), mb[:], 0o600); err != nil {
		t.Fatal(err)
	}
	// Corruption: segment 1's header no longer verifies.
	rtEdit(t, rtSegPath(dir, 1), func(b []byte) []byte { b[0] ^= 0xff; return b })

	l = rtOpen(t, dir, rtOpts(true))
	if !l.Recovery().Repaired {
		t.Fatalf("Recovery() = %+v, want a repair", l.Recovery())
	}
	want := [][]byte{nil}
	first := l.FirstIndex()
	if first != 1 || l.LastIndex() != 0 {
		t.Fatalf("after repair: FirstIndex %d LastIndex %d, want an empty log at 1", first, l.LastIndex())
	}
	for i := range 80 {
		rtAppend(t, l, &want, []byte(fmt.Sprintf("after repair %d", i)))
	}
	rtClose(t, l)
	if b, err := os.ReadFile(filepath.Join(dir, metaName)); err == nil {
		if m, why := decodeMeta(b); why == "" && m.cutting {
			t.Errorf("META still holds the cut intent (cut %d) after the repaired Open", m.cut)
		}
	}

	l = rtOpen(t, dir, rtOpts(false))
	if err := rtVerify(l, want, 80); err != nil {
		t.Fatalf("acknowledged records lost at the next Open: %v (report %+v)", err, l.Recovery())
	}
}

// ---- crashes during recovery itself ----

// r3rMedia wraps reviewMedia (which "crashes", by panicking, before its
// n-th durable step) and remembers the lock, files and mappings an Open
// that crashed leaves behind, so the test can release them.
type r3rMedia struct {
	*reviewMedia
	mu    sync.Mutex
	locks []io.Closer
	files []MediaFile
	maps  []Mapping
}

func (m *r3rMedia) Lock(dir string, perm fs.FileMode) (io.Closer, error) {
	c, err := m.reviewMedia.Lock(dir, perm)
	if err == nil {
		m.mu.Lock()
		m.locks = append(m.locks, c)
		m.mu.Unlock()
	}
	return c, err
}

func (m *r3rMedia) Open(path string) (MediaFile, error) {
	f, err := m.reviewMedia.Open(path)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.files = append(m.files, f)
	m.mu.Unlock()
	return &r3rFile{MediaFile: f, m: m}, nil
}

type r3rFile struct {
	MediaFile
	m *r3rMedia
}

func (f *r3rFile) Map(want Persist) (Mapping, error) {
	mp, err := f.MediaFile.Map(want)
	if err == nil {
		f.m.mu.Lock()
		f.m.maps = append(f.m.maps, mp)
		f.m.mu.Unlock()
	}
	return mp, err
}

func (m *r3rMedia) release() {
	for _, mp := range m.maps {
		mp.Unmap()
	}
	for _, f := range m.files {
		f.Close()
	}
	for _, c := range m.locks {
		c.Close()
	}
}

func r3rRec(i uint64) []byte {
	b := make([]byte, 2000+int(i%7)*100)
	for j := range b {
		b[j] = byte(i) ^ byte(j*7)
	}
	le.PutUint64(b, i)
	return b
}

// r3rState is a crashed log to recover: its files and what recovery must
// give (first, last; records read back as r3rRec).
type r3rState struct {
	name        string
	build       func(t *testing.T) map[string][]byte
	first, last uint64
}

// TestReview3CrashDuringRecovery: FORMAT.md says recovery is idempotent (a
// crash during it leaves a state that recovers to the same result). Crash
// before each durable step of an Open that finishes an interrupted
// TruncateFront and TruncateBack (cut inside a batch, later segments to
// remove), that drops a torn tail with complete records after it, and that
// redoes a TruncateFront past the end; the next Open must give the result
// an uninterrupted recovery gives, and keep what is appended after it.
func TestReview3CrashDuringRecovery(t *testing.T) {
	rtEnv(t)
	opts := func() *Options { return rtOpts(false) }
	// fill appends singles up to four segments, with a batch of ten in the
	// third, and returns the first index of segment 2 and of the batch.
	fill := func(t *testing.T, l *Log) (seg2, batch uint64) {
		next := uint64(1)
		app := func() {
			if idx, err := l.Append(r3rRec(next)); err != nil || idx != next {
				t.Fatalf("Append %d: %d, %v", next, idx, err)
			}
			next++
		}
		for len(l.segs) < 3 {
			app()
		}
		seg2 = l.segs[1].first
		for range 20 {
			app()
		}
		batch = next
		var recs [][]byte
		for i := range uint64(10) {
			recs = append(recs, r3rRec(next+i))
		}
		if idx, err := l.AppendBatch(recs); err != nil || idx != next {
			t.Fatalf("AppendBatch: %d, %v", idx, err)
		}
		next += 10
		for len(l.segs) < 4 {
			app()
		}
		for range 20 {
			app()
		}
		return seg2, batch
	}
	writeMeta := func(t *testing.T, dir string, m meta) {
		var b [metaSize]byte
		encodeMeta(b[:], m)
		if err := os.WriteFile(filepath.Join(dir, metaName), b[:], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var st []*r3rState
	{
		s := &r3rState{}
		s.name = "front and back truncation"
		s.build = func(t *testing.T) map[string][]byte {
			dir := rtDir(t)
			l := rtOpen(t, dir, opts())
			seg2, batch := fill(t, l)
			rtClose(t, l)
			s.first, s.last = seg2+5, batch+4
			writeMeta(t, dir, meta{first: s.first, cut: s.last, cutting: true})
			return rtSnapshot(t, dir)
		}
		st = append(st, s)
	}
	{
		s := &r3rState{}
		s.name = "torn tail"
		s.build = func(t *testing.T) map[string][]byte {
			dir := rtDir(t)
			l := rtOpen(t, dir, opts())
			for i := uint64(1); i <= 50; i++ {
				if _, err := l.Append(r3rRec(i)); err != nil {
					t.Fatal(err)
				}
			}
			r3rInFlight(t, l, []int{100, 300, 300, 300})
			benchSettle(l) // no segment preparation under way while the files are copied
			files := rtSnapshot(t, dir)
			l.Close()
			return files
		}
		s.first, s.last = 1, 50
		st = append(st, s)
	}
	{
		s := &r3rState{}
		s.name = "front truncation past the end"
		s.build = func(t *testing.T) map[string][]byte {
			dir := rtDir(t)
			l := rtOpen(t, dir, opts())
			fill(t, l)
			last := l.LastIndex()
			rtClose(t, l)
			s.first, s.last = last+100, last+99
			writeMeta(t, dir, meta{first: s.first})
			return rtSnapshot(t, dir)
		}
		st = append(st, s)
	}
	holds := func(l *Log, first, last uint64, rec func(uint64) []byte) error {
		if l.FirstIndex() != first || l.LastIndex() != last {
			return fmt.Errorf("log holds %d..%d, want %d..%d", l.FirstIndex(), l.LastIndex(), first, last)
		}
		for i := first; i <= last; i++ {
			got, err := l.Read(i)
			if err != nil || !bytes.Equal(got, rec(i)) {
				return fmt.Errorf("record %d: %v", i, err)
			}
		}
		return nil
	}
	for _, s := range st {
		t.Run(s.name, func(t *testing.T) {
			files := s.build(t)
			// Uninterrupted recovery first.
			l := rtOpen(t, rtMaterialize(t, files), opts())
			if err := holds(l, s.first, s.last, r3rRec); err != nil {
				t.Fatalf("uninterrupted recovery: %v", err)
			}
			l.Close()
			h, err := resolveHW("/sys")
			if err != nil {
				t.Fatal(err)
			}
			for n := int64(1); ; n++ {
				if n > 100 {
					t.Fatal("recovery did not finish within 100 durable steps")
				}
				dir := rtMaterialize(t, files)
				m := &r3rMedia{reviewMedia: &reviewMedia{Media: &osMedia{hw: &h}}}
				m.left.Store(n)
				o := opts()
				o.Media = m
				var l *Log
				var err error
				crashed := func() (crashed bool) {
					defer func() {
						if r := recover(); r != nil {
							if _, ok := r.(reviewCrash); !ok {
								panic(r)
							}
							crashed = true
						}
					}()
					l, err = Open(dir, o)
					return false
				}()
				m.left.Store(0)
				if !crashed {
					if err != nil {
						t.Fatalf("Open with no crash: %v", err)
					}
					l.Close()
					t.Logf("%d crash points in recovery", n-1)
					return
				}
				m.release()
				l2, err := Open(dir, opts())
				if err != nil {
					t.Fatalf("crash at recovery step %d: reopen: %v", n, err)
				}
				if err := holds(l2, s.first, s.last, r3rRec); err != nil {
					l2.Close()
					t.Fatalf("crash at recovery step %d: %v", n, err)
				}
				for i := s.last + 1; i <= s.last+5; i++ {
					if idx, err := l2.Append(r3rRec(i)); err != nil || idx != i {
						t.Fatalf("crash at recovery step %d: append %d: %d, %v", n, i, idx, err)
					}
				}
				l2.Close()
				l3, err := Open(dir, opts())
				if err != nil {
					t.Fatalf("crash at recovery step %d: second reopen: %v", n, err)
				}
				if err := holds(l3, s.first, s.last+5, r3rRec); err != nil {
					l3.Close()
					t.Fatalf("crash at recovery step %d: after appends and reopen: %v", n, err)
				}
				l3.Close()
			}
		})
	}
}

// ---- removals recovery does not make durable ----

// r3rUnsynced is a Media under the contract's crash model for removals:
// a removal not followed by a SyncDir may be undone by a crash (crash puts
// such files back). Renames and created segments are durable on return.
type r3rUnsynced struct {
	Media
	mu      sync.Mutex
	pending map[string][]byte
}

func (m *r3rUnsynced) Remove(path string) error {
	b, rerr := os.ReadFile(path)
	err := m.Media.Remove(path)
	if err == nil && rerr == nil {
		m.mu.Lock()
		m.pending[path] = b
		m.mu.Unlock()
	}
	return err
}

func (m *r3rUnsynced) SyncDir(dir string) error {
	m.mu.Lock()
	clear(m.pending)
	m.mu.Unlock()
	return m.Media.SyncDir(dir)
}

func (m *r3rUnsynced) crash(t *testing.T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, b := range m.pending {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReview3UnsyncedRemovalBeforeFirstSegment: a new log's first Open
// crashed after creating segment 1 (SegmentSize 2 MiB) and before
// activating it. The next Open, with 1 MiB segments, removes segment 1 (not
// of the current size, never used) without a directory sync, creates and
// activates segment 2, and acknowledges appends. A crash before any
// SyncDir may undo the removal (Media: "Remove deletes a file. SyncDir
// makes removals durable"); segment 1 comes back, not activated, before the
// activated segment 2, and Open refuses the log although nothing but an
// unused file came back.
func TestReview3UnsyncedRemovalBeforeFirstSegment(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	om := &osMedia{hw: &h}
	var mb [metaSize]byte
	encodeMeta(mb[:], meta{first: 1})
	if err := om.ReplaceFile(filepath.Join(dir, metaName), mb[:], 0o600); err != nil {
		t.Fatal(err)
	}
	var hdr [segHeaderSize]byte
	encodeSegHeader(hdr[:], segHeader{version: formatVersion, size: 2 << 20, seq: 1, salt: 12345, bound: defaultInFlightBound})
	if err := om.CreateSegment(rtSegPath(dir, 1), 2<<20, hdr[:], 0o600); err != nil {
		t.Fatal(err)
	}

	m := &r3rUnsynced{Media: om, pending: map[string][]byte{}}
	o := rtOpts(false)
	o.Media = m
	l := rtOpen(t, dir, o)
	want := [][]byte{nil}
	for i := range 10 {
		rtAppend(t, l, &want, []byte(fmt.Sprintf("acked %d", i)))
	}
	l.mu.Lock()
	seq := l.segs[0].seq
	l.mu.Unlock()
	l.Close()
	m.mu.Lock()
	_, undone := m.pending[rtSegPath(dir, 1)]
	m.mu.Unlock()
	if !undone {
		return // the removal was made durable: no crash can bring segment 1 back
	}
	t.Errorf("segment 1's removal was not made durable before segment %d was activated", seq)
	m.crash(t)

	l2, err := Open(dir, rtOpts(false))
	if err != nil {
		t.Fatalf("Open after a crash that only undid the removal of an unused segment file: %v", err)
	}
	defer l2.Close()
	if err := rtVerify(l2, want, 10); err != nil {
		t.Fatal(err)
	}
}

// TestReview3CutIntentBeyondRepairCut: the same interrupted TruncateBack
// (its cut point in segment 3 of 3), and segment 2's header damaged. With
// RepairCorruption, Open removes segments 2 and 3 and should keep segment
// 1's records, but the redo of the cut then walks segment 1 up to the cut
// point, which now lies past its last record, and Open fails with
// ErrCorrupt although repair was asked for.
func TestReview3CutIntentBeyondRepairCut(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	l := rtOpen(t, dir, rtOpts(false))
	want := [][]byte{nil}
	for i := uint64(1); len(l.segs) < 3 || l.LastIndex() < l.segs[2].first+20; i++ {
		rtAppend(t, l, &want, r3rRec(i))
	}
	seg2 := l.segs[1].first
	cut := l.segs[2].first + 10
	rtClose(t, l)
	var mb [metaSize]byte
	encodeMeta(mb[:], meta{first: 1, cut: cut, cutting: true})
	if err := os.WriteFile(filepath.Join(dir, metaName), mb[:], 0o600); err != nil {
		t.Fatal(err)
	}
	rtEdit(t, rtSegPath(dir, 2), func(b []byte) []byte { b[0] ^= 0xff; return b })

	l, err := Open(dir, rtOpts(true))
	if err != nil {
		t.Fatalf("Open with RepairCorruption: %v", err)
	}
	defer l.Close()
	if err := rtVerify(l, want, seg2-1); err != nil {
		t.Fatal(err)
	}
}

// TestReview3RefusedOpenWritesMeta: META missing and segment 1's header
// damaged, in a log whose segment 2 holds records. recoverMeta is given no
// first segment (slot 0 has no segment object), so it takes the log for a
// new one and writes META (first 1) before the segment checks refuse the
// log with ErrCorrupt: an Open that refuses a log changes its files.
func TestReview3RefusedOpenWritesMeta(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	l := rtOpen(t, dir, rtOpts(false))
	for i := uint64(1); len(l.segs) < 2 || l.LastIndex() < l.segs[1].first+5; i++ {
		if _, err := l.Append(r3rRec(i)); err != nil {
			t.Fatal(err)
		}
	}
	rtClose(t, l)
	if err := os.Remove(filepath.Join(dir, metaName)); err != nil {
		t.Fatal(err)
	}
	rtEdit(t, rtSegPath(dir, 1), func(b []byte) []byte { b[0] ^= 0xff; return b })
	files := rtSnapshot(t, dir)
	l, err := Open(dir, rtOpts(false))
	if err == nil {
		l.Close()
		t.Fatal("Open succeeded; want ErrCorrupt")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	rtSameFiles(t, dir, files, "refused Open")
}
