package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Recovery and damage tests. Every test builds a log, closes it, damages
// the closed segment files the way a crash or a broken medium would, and
// reopens it. Helpers are prefixed rt.

const rtSegSize = 1 << 20

// rtDir returns a fresh directory on /dev/shm (removed at cleanup), or the
// test's temporary directory when /dev/shm is missing.
func rtDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-rt-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// rtOpts is the options every test uses: 1 MiB segments, the cache-flush
// path (tmpfs), and repair as asked.
func rtOpts(repair bool) *Options {
	return &Options{SegmentSize: rtSegSize, Persist: PersistCacheFlush, RepairCorruption: repair}
}

// rtEnv keeps WAL_PERSIST from overriding the options.
func rtEnv(t *testing.T) {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
}

// rtOpen opens dir and fails the test on error. The log is closed at
// cleanup if the test did not close it.
func rtOpen(t *testing.T, dir string, o *Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func rtClose(t *testing.T, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// rtBytes returns n random bytes.
func rtBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		le.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n:n]
}

// rtAppend appends data and checks that it got the next index: want[i] is
// what was written at index i (want[0] is unused).
func rtAppend(t *testing.T, l *Log, want *[][]byte, data []byte) uint64 {
	t.Helper()
	idx, err := l.Append(data)
	if err != nil {
		t.Fatalf("Append (record %d): %v", len(*want), err)
	}
	if idx != uint64(len(*want)) {
		t.Fatalf("Append returned index %d, want %d", idx, len(*want))
	}
	*want = append(*want, data)
	return idx
}

// rtRec says where a record lies.
type rtRec struct {
	seq  uint64 // segment file
	off  int    // offset of the record's header in the file
	size int    // bytes the record occupies, padding included
	len  int    // payload bytes
}

// rtLocate returns where every record of the open log lies, by index
// (entry 0 unused).
func rtLocate(t *testing.T, l *Log) []rtRec {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.catchUp()
	locs := make([]rtRec, l.next)
	for _, s := range l.segs {
		for i := range s.offs.Len() {
			off := s.offs.At(i)
			h := readRecHeader(s.mem[off:])
			locs[s.first+uint64(i)] = rtRec{seq: s.seq, off: int(off), size: recSize(int(h.length)), len: int(h.length)}
		}
	}
	for i := uint64(1); i < uint64(len(locs)); i++ {
		if locs[i].seq == 0 {
			t.Fatalf("rtLocate: record %d not found in any segment", i)
		}
	}
	return locs
}

// rtSegLast returns, per segment file, the index of its last record.
func rtSegLast(locs []rtRec) map[uint64]uint64 {
	m := make(map[uint64]uint64)
	for i := 1; i < len(locs); i++ {
		m[locs[i].seq] = uint64(i)
	}
	return m
}

func rtSegPath(dir string, seq uint64) string { return filepath.Join(dir, segName(seq)) }

// rtEdit rewrites a closed file through edit (which may shorten it).
func rtEdit(t *testing.T, path string, edit func(b []byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rtReadFile reads a file, failing the test on error.
func rtReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rtAllZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// rtVerify checks FirstIndex == 1, LastIndex == last and that every record
// in [1, last] reads back as want[i].
func rtVerify(l *Log, want [][]byte, last uint64) error {
	if f := l.FirstIndex(); f != 1 {
		return fmt.Errorf("FirstIndex() = %d, want 1", f)
	}
	if got := l.LastIndex(); got != last {
		return fmt.Errorf("LastIndex() = %d, want %d", got, last)
	}
	if last >= uint64(len(want)) {
		return fmt.Errorf("LastIndex() = %d, but only %d records were written", last, len(want)-1)
	}
	for i := uint64(1); i <= last; i++ {
		got, err := l.Read(i)
		if err != nil {
			return fmt.Errorf("Read(%d): %v", i, err)
		}
		if !bytes.Equal(got, want[i]) {
			return fmt.Errorf("Read(%d): got %d bytes that differ from the %d written", i, len(got), len(want[i]))
		}
	}
	if _, err := l.Read(last + 1); !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("Read(%d) past LastIndex: err %v, want ErrNotFound", last+1, err)
	}
	return nil
}

// rtExercise checks an open, recovered log: every record in [1, LastIndex]
// is want[i], the next Append gets LastIndex+1 and reads back, and after
// Close a reopen without repair is clean and holds everything. It closes l.
func rtExercise(dir string, l *Log, want [][]byte) error {
	defer l.Close()
	last := l.LastIndex()
	if err := rtVerify(l, want, last); err != nil {
		return err
	}
	extra := []byte(fmt.Sprintf("appended after recovery at index %d", last+1))
	idx, err := l.Append(extra)
	if err != nil {
		return fmt.Errorf("Append after recovery: %v", err)
	}
	if idx != last+1 {
		return fmt.Errorf("Append after recovery got index %d, want %d", idx, last+1)
	}
	if got, err := l.Read(idx); err != nil || !bytes.Equal(got, extra) {
		return fmt.Errorf("Read(%d) of the record appended after recovery: %q, %v", idx, got, err)
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("Close after recovery: %v", err)
	}
	l2, err := Open(dir, rtOpts(false))
	if err != nil {
		return fmt.Errorf("reopen (no repair) after appending %d: %v", idx, err)
	}
	defer l2.Close()
	w := append(slices.Clip(want[:idx]), extra)
	if err := rtVerify(l2, w, idx); err != nil {
		return fmt.Errorf("after appending %d and reopening: %v", idx, err)
	}
	if r := l2.Recovery(); r.Repaired || r.DroppedRecords != 0 || len(r.DroppedFiles) != 0 {
		return fmt.Errorf("reopen after a clean close discarded something: %+v", r)
	}
	return l2.Close()
}

// rtBuild opens a new log in dir, appends one record per size with random
// contents, and closes it. It returns the payloads and where they lie.
func rtBuild(t *testing.T, dir string, o *Options, rng *rand.Rand, sizes []int) ([][]byte, []rtRec) {
	t.Helper()
	l := rtOpen(t, dir, o)
	want := [][]byte{nil}
	for _, n := range sizes {
		rtAppend(t, l, &want, rtBytes(rng, n))
	}
	locs := rtLocate(t, l)
	rtClose(t, l)
	return want, locs
}

// rtRepeat returns n copies of size.
func rtRepeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

// rtRecDamage damages the record at r inside its segment file image b.
type rtRecDamage struct {
	name string
	fn   func(b []byte, r rtRec)
	gone bool // nothing of the record is left: as the last record, there is no torn tail
}

var rtTornDamages = []rtRecDamage{
	{"payload byte flipped", func(b []byte, r rtRec) { b[r.off+recHeaderSize+r.len/2] ^= 0x40 }, false},
	{"checksum bit flipped", func(b []byte, r rtRec) { b[r.off] ^= 0x01 }, false},
	{"checksum word zeroed", func(b []byte, r rtRec) { clear(b[r.off : r.off+8]) }, false},
	{"index word zeroed", func(b []byte, r rtRec) { clear(b[r.off+8 : r.off+16]) }, false},
	{"length word zeroed", func(b []byte, r rtRec) { clear(b[r.off+16 : r.off+24]) }, false},
	{"last payload word zeroed", func(b []byte, r rtRec) { clear(b[r.off+r.size-8 : r.off+r.size]) }, false},
	{"whole record zeroed", func(b []byte, r rtRec) { clear(b[r.off : r.off+r.size]) }, true},
	{"record overwritten with garbage", func(b []byte, r rtRec) {
		rng := rand.New(rand.NewPCG(7, 7))
		copy(b[r.off:r.off+r.size], rtBytes(rng, r.size))
	}, false},
}

// rtDamageRecord applies d to record r of the closed log in dir.
func rtDamageRecord(t *testing.T, dir string, r rtRec, d func(b []byte, r rtRec)) {
	t.Helper()
	rtEdit(t, rtSegPath(dir, r.seq), func(b []byte) []byte { d(b, r); return b })
}

// TestRtTornLastRecord: the last record is torn in every way a crash can
// leave it. Recovery drops it alone, reports a torn tail, zeroes its bytes
// on disk, and the next Append reuses its index.
func TestRtTornLastRecord(t *testing.T) {
	rtEnv(t)
	shapes := []struct {
		name  string
		sizes []int
	}{
		{"one segment", func() []int {
			var s []int
			for i := range 40 {
				s = append(s, 1+(i*37)%500)
			}
			return s
		}()},
		{"two segments", rtRepeat(60, 20011)},
	}
	for _, shape := range shapes {
		for _, d := range rtTornDamages {
			t.Run(shape.name+"/"+d.name, func(t *testing.T) {
				dir := rtDir(t)
				want, locs := rtBuild(t, dir, rtOpts(false), rand.New(rand.NewPCG(1, 2)), shape.sizes)
				n := uint64(len(want) - 1)
				last := locs[n]
				if shape.name == "two segments" && last.seq != 2 {
					t.Fatalf("fixture: last record in segment %d, want 2", last.seq)
				}
				rtDamageRecord(t, dir, last, d.fn)

				l := rtOpen(t, dir, rtOpts(false))
				if err := rtVerify(l, want, n-1); err != nil {
					t.Fatal(err)
				}
				r := l.Recovery()
				switch {
				case d.gone && (r.TornTail || r.DroppedBytes != 0):
					t.Fatalf("Recovery() = %+v: the record left no byte behind, so there is no torn tail to drop", r)
				case !d.gone && (!r.TornTail || r.DroppedBytes <= 0):
					t.Fatalf("Recovery() = %+v, want TornTail and some dropped bytes", r)
				case r.Repaired || r.DroppedRecords != 0 || r.Records != n-1:
					t.Fatalf("Recovery() = %+v, want no repair, no complete-looking record dropped, %d records", r, n-1)
				}
				// The torn record's bytes are zero on disk before Open returns.
				b := rtReadFile(t, rtSegPath(dir, last.seq))
				if !rtAllZero(b[last.off:]) {
					t.Fatalf("bytes from offset %d (the torn record) to the end of %s are not all zero after recovery", last.off, segName(last.seq))
				}
				if err := rtExercise(dir, l, want); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestRtTornLastBatch: one record of the last AppendBatch is torn; the
// whole batch goes, the records before it stay.
func TestRtTornLastBatch(t *testing.T) {
	rtEnv(t)
	const singles, batchLen = 20, 5
	for _, pos := range []int{0, 2, batchLen - 1} {
		for _, d := range rtTornDamages[:3] {
			t.Run(fmt.Sprintf("record %d of %d/%s", pos, batchLen, d.name), func(t *testing.T) {
				dir := rtDir(t)
				rng := rand.New(rand.NewPCG(3, uint64(pos)))
				l := rtOpen(t, dir, rtOpts(false))
				want := [][]byte{nil}
				for i := range singles {
					rtAppend(t, l, &want, rtBytes(rng, 10+i*7))
				}
				var batch [][]byte
				for i := range batchLen {
					batch = append(batch, rtBytes(rng, 100+i*13))
				}
				first, err := l.AppendBatch(batch)
				if err != nil || first != singles+1 {
					t.Fatalf("AppendBatch = %d, %v; want %d", first, err, singles+1)
				}
				want = append(want, batch...)
				locs := rtLocate(t, l)
				rtClose(t, l)
				rtDamageRecord(t, dir, locs[first+uint64(pos)], d.fn)

				l = rtOpen(t, dir, rtOpts(false))
				if err := rtVerify(l, want, singles); err != nil {
					t.Fatal(err)
				}
				r := l.Recovery()
				if !r.TornTail || r.Repaired || r.DroppedRecords != batchLen-1 {
					t.Fatalf("Recovery() = %+v, want TornTail and the %d intact records of the batch dropped", r, batchLen-1)
				}
				b := rtReadFile(t, rtSegPath(dir, 1))
				if !rtAllZero(b[locs[first].off:]) {
					t.Fatalf("the dropped batch's bytes are not zero on disk after recovery")
				}
				// The batch's first index is reused.
				if err := rtExercise(dir, l, want); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestRtTornBeforeCompleteRecords: record N-3 is torn while N-2..N, written
// concurrently, are complete. None was acknowledged (Append returns only
// when every earlier record is durable), so all four are dropped.
func TestRtTornBeforeCompleteRecords(t *testing.T) {
	rtEnv(t)
	const n = 50
	for _, d := range rtTornDamages {
		t.Run(d.name, func(t *testing.T) {
			dir := rtDir(t)
			var sizes []int
			for i := range n {
				sizes = append(sizes, 50+(i*91)%700)
			}
			want, locs := rtBuild(t, dir, rtOpts(false), rand.New(rand.NewPCG(4, 4)), sizes)
			rtDamageRecord(t, dir, locs[n-3], d.fn)

			l := rtOpen(t, dir, rtOpts(false))
			if err := rtVerify(l, want, n-4); err != nil {
				t.Fatal(err)
			}
			r := l.Recovery()
			if !r.TornTail || r.Repaired || r.DroppedRecords != 3 {
				t.Fatalf("Recovery() = %+v, want TornTail and DroppedRecords 3 (records %d..%d)", r, n-2, n)
			}
			for i := uint64(n - 3); i <= n; i++ {
				if _, err := l.Read(i); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Read(%d) after the tail was dropped: %v, want ErrNotFound", i, err)
				}
			}
			b := rtReadFile(t, rtSegPath(dir, 1))
			if !rtAllZero(b[locs[n-3].off:]) {
				t.Fatalf("dropped records are not zero on disk after recovery")
			}
			if err := rtExercise(dir, l, want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// rtSnapshot returns the contents of every file in dir but LOCK.
func rtSnapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string][]byte)
	for _, e := range ents {
		if e.Type().IsRegular() && e.Name() != lockName {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if errors.Is(err, fs.ErrNotExist) {
				// Renamed or removed since the listing, by a segment
				// preparation still running: a state a crash could leave.
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = b
		}
	}
	return m
}

// rtSameFiles fails the test when dir's files differ from snap.
func rtSameFiles(t *testing.T, dir string, snap map[string][]byte, what string) {
	t.Helper()
	now := rtSnapshot(t, dir)
	for name, b := range snap {
		if c, ok := now[name]; !ok {
			t.Errorf("%s: %s was removed", what, name)
		} else if !bytes.Equal(b, c) {
			t.Errorf("%s: %s was modified", what, name)
		}
	}
	for name := range now {
		if _, ok := snap[name]; !ok {
			t.Errorf("%s: %s was created", what, name)
		}
	}
}

// rtMaterialize writes files into a fresh directory.
func rtMaterialize(t *testing.T, files map[string][]byte) string {
	t.Helper()
	return rtMaterializeIn(t, rtDir(t), files)
}

// rtMaterializeIn writes files into dir.
func rtMaterializeIn(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rtDroppedSeqs returns the sequence numbers of the segment files in
// Recovery().DroppedFiles.
func rtDroppedSeqs(t *testing.T, r RecoveryReport) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, p := range r.DroppedFiles {
		if seq, ok := parseSegName(filepath.Base(p)); ok {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs
}

// rtCheckFreshSpare checks that segment seq in dir, if present, is a
// prepared segment that never held records: header valid, activation block
// and record area zero. Old data must not survive in a re-created file.
func rtCheckFreshSpare(t *testing.T, dir string, seq uint64) {
	t.Helper()
	b, err := os.ReadFile(rtSegPath(dir, seq))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, why := decodeSegHeader(b); why != "" {
		t.Fatalf("%s: %s", segName(seq), why)
	}
	if !rtAllZero(b[activationOff:]) {
		t.Fatalf("%s exists after repair and is not a fresh, never-activated segment", segName(seq))
	}
}

// TestRtSealedSegmentDamage: a byte flipped in a record of the first of
// four segments is corruption, not a torn tail. Open refuses it (and
// changes nothing); with RepairCorruption the log is cut just before it.
func TestRtSealedSegmentDamage(t *testing.T) {
	rtEnv(t)
	base := rtDir(t)
	want, locs := rtBuild(t, base, rtOpts(false), rand.New(rand.NewPCG(5, 5)), rtRepeat(460, 8000))
	segLast := rtSegLast(locs)
	n := uint64(len(want) - 1)
	if locs[n].seq != 4 {
		t.Fatalf("fixture: %d records end in segment %d, want 4", n, locs[n].seq)
	}
	const k = 40 // the damaged record, in segment 1
	bad := locs[k]
	if bad.seq != 1 {
		t.Fatalf("fixture: record %d in segment %d", k, bad.seq)
	}
	rtDamageRecord(t, base, bad, rtTornDamages[0].fn)
	files := rtSnapshot(t, base)

	t.Run("refused", func(t *testing.T) {
		dir := rtMaterialize(t, files)
		l, err := Open(dir, rtOpts(false))
		if err == nil {
			l.Close()
			t.Fatalf("Open succeeded on a log with a damaged record in a sealed segment (LastIndex %d)", l.LastIndex())
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
		msg := err.Error()
		for _, s := range []string{segName(1), fmt.Sprintf("offset %d", bad.off)} {
			if !strings.Contains(msg, s) {
				t.Errorf("error %q does not name %q", msg, s)
			}
		}
		rtSameFiles(t, dir, files, "refused Open")
	})

	t.Run("repaired", func(t *testing.T) {
		dir := rtMaterialize(t, files)
		var logBuf rtLogBuf
		o := rtOpts(true)
		o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
		l := rtOpen(t, dir, o)
		if err := rtVerify(l, want, k-1); err != nil {
			t.Fatal(err)
		}
		r := l.Recovery()
		if !r.Repaired || len(r.Reasons) == 0 {
			t.Fatalf("Recovery() = %+v, want Repaired with reasons", r)
		}
		dropped := rtDroppedSeqs(t, r)
		for _, seq := range []uint64{2, 3, 4} {
			if !slices.Contains(dropped, seq) {
				t.Errorf("DroppedFiles %v does not list %s", r.DroppedFiles, segName(seq))
			}
		}
		for _, seq := range dropped {
			if seq < 2 || seq > 5 {
				t.Errorf("DroppedFiles lists %s, which held records before the damage or never existed", segName(seq))
			}
		}
		if !strings.Contains(logBuf.String(), "repair") {
			t.Errorf("the logger was not told of the repair: %q", logBuf.String())
		}
		// The cut region of segment 1 is zero on disk.
		b := rtReadFile(t, rtSegPath(dir, 1))
		if end := locs[segLast[1]].off + locs[segLast[1]].size; !rtAllZero(b[bad.off:end]) {
			t.Fatalf("records %d..%d are not zero on disk after the repair", k, segLast[1])
		}
		rtClose(t, l)
		// Later segments are gone; the background preparation may have
		// made segment 2 again, but only as a fresh spare.
		for seq := uint64(3); seq <= 5; seq++ {
			if _, err := os.Stat(rtSegPath(dir, seq)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still exists after the repair (stat: %v)", segName(seq), err)
			}
		}
		rtCheckFreshSpare(t, dir, 2)

		l = rtOpen(t, dir, rtOpts(false))
		if err := rtVerify(l, want, k-1); err != nil {
			t.Fatal(err)
		}
		if r := l.Recovery(); r.Repaired || r.TornTail || r.DroppedRecords != 0 {
			t.Fatalf("second Open after the repair is not clean: %+v", r)
		}
		if err := rtExercise(dir, l, want); err != nil {
			t.Fatal(err)
		}
	})
}

// rtLogBuf is a logger destination safe for concurrent use.
type rtLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *rtLogBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *rtLogBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestRtDamageBeyondInFlightBound: in the last segment, damage followed by
// valid records ending more than the in-flight bound (4 KiB here) after it
// cannot be a torn write: ErrCorrupt, or a cut with RepairCorruption.
// Within the bound, or inside a single oversized batch that starts at the
// damage, it is a torn tail.
func TestRtDamageBeyondInFlightBound(t *testing.T) {
	rtEnv(t)
	const bound = 4096
	type op struct {
		batch [][]byte // nil: a single record of size
		size  int
	}
	cases := []struct {
		name    string
		ops     func(rng *rand.Rand) []op
		damage  func(n uint64) uint64 // index of the damaged record
		corrupt bool
		keep    func(n uint64) uint64 // LastIndex after Open (repair when corrupt)
	}{
		{
			name: "damage far before the tail",
			ops: func(rng *rand.Rand) []op {
				var o []op
				for range 200 {
					o = append(o, op{size: 500})
				}
				return o
			},
			damage: func(n uint64) uint64 { return 50 }, corrupt: true,
			keep: func(n uint64) uint64 { return 49 },
		},
		{
			name: "damage within the bound of the tail",
			ops: func(rng *rand.Rand) []op {
				var o []op
				for range 200 {
					o = append(o, op{size: 500})
				}
				return o
			},
			damage: func(n uint64) uint64 { return n - 5 },
			keep:   func(n uint64) uint64 { return n - 6 },
		},
		{
			name: "first record of an oversized last batch",
			ops: func(rng *rand.Rand) []op {
				var o []op
				for range 20 {
					o = append(o, op{size: 300})
				}
				return append(o, op{batch: [][]byte{rtBytes(rng, 3000), rtBytes(rng, 3000), rtBytes(rng, 3000)}})
			},
			damage: func(n uint64) uint64 { return n - 2 },
			keep:   func(n uint64) uint64 { return n - 3 },
		},
		{
			name: "record before a complete oversized batch",
			ops: func(rng *rand.Rand) []op {
				var o []op
				for range 20 {
					o = append(o, op{size: 300})
				}
				return append(o, op{batch: [][]byte{rtBytes(rng, 3000), rtBytes(rng, 3000), rtBytes(rng, 3000)}})
			},
			damage: func(n uint64) uint64 { return n - 3 }, corrupt: true,
			keep: func(n uint64) uint64 { return n - 4 },
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := rtDir(t)
			rng := rand.New(rand.NewPCG(6, 6))
			o := rtOpts(false)
			o.InFlightBound = bound
			l := rtOpen(t, base, o)
			want := [][]byte{nil}
			for _, op := range c.ops(rng) {
				if op.batch == nil {
					rtAppend(t, l, &want, rtBytes(rng, op.size))
					continue
				}
				if _, err := l.AppendBatch(op.batch); err != nil {
					t.Fatal(err)
				}
				want = append(want, op.batch...)
			}
			locs := rtLocate(t, l)
			rtClose(t, l)
			n := uint64(len(want) - 1)
			k := c.damage(n)
			bad := locs[k]
			rtDamageRecord(t, base, bad, rtTornDamages[0].fn)
			files := rtSnapshot(t, base)
			keep := c.keep(n)

			for _, repair := range []bool{false, true} {
				dir := rtMaterialize(t, files)
				l, err := Open(dir, rtOpts(repair))
				if c.corrupt && !repair {
					if err == nil {
						l.Close()
						t.Fatalf("Open succeeded (LastIndex %d); want ErrCorrupt", l.LastIndex())
					}
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("Open: %v, want ErrCorrupt", err)
					}
					for _, s := range []string{segName(1), fmt.Sprintf("offset %d", bad.off)} {
						if !strings.Contains(err.Error(), s) {
							t.Errorf("error %q does not name %q", err, s)
						}
					}
					rtSameFiles(t, dir, files, "refused Open")
					continue
				}
				if err != nil {
					t.Fatalf("Open (repair %v): %v", repair, err)
				}
				t.Cleanup(func() { l.Close() })
				if err := rtVerify(l, want, keep); err != nil {
					t.Fatalf("repair %v: %v", repair, err)
				}
				r := l.Recovery()
				if c.corrupt {
					if !r.Repaired {
						t.Fatalf("Recovery() = %+v, want Repaired", r)
					}
				} else if !r.TornTail || r.Repaired {
					t.Fatalf("Recovery() = %+v, want a torn tail and no repair", r)
				}
				b := rtReadFile(t, rtSegPath(dir, 1))
				if !rtAllZero(b[locs[keep+1].off:]) {
					t.Fatalf("repair %v: the dropped records are not zero on disk", repair)
				}
				if err := rtExercise(dir, l, want); err != nil {
					t.Fatalf("repair %v: %v", repair, err)
				}
			}
		})
	}
}

// TestRtDiscardedRecordsNeverReturn: records dropped by recovery must not
// come back when new records later end exactly where they began (same
// salt, consecutive index: without the zeroing they would verify).
func TestRtDiscardedRecordsNeverReturn(t *testing.T) {
	rtEnv(t)
	const n = 30
	build := func(t *testing.T) (string, [][]byte, []rtRec) {
		dir := rtDir(t)
		var sizes []int
		for i := range n {
			sizes = append(sizes, 40+(i*29)%300)
		}
		want, locs := rtBuild(t, dir, rtOpts(false), rand.New(rand.NewPCG(8, 8)), sizes)
		rtDamageRecord(t, dir, locs[n-3], rtTornDamages[1].fn)
		return dir, want, locs
	}
	// firstRecovery reopens after the torn record and checks the drop.
	firstRecovery := func(t *testing.T, dir string, want [][]byte, locs []rtRec) *Log {
		l := rtOpen(t, dir, rtOpts(false))
		if err := rtVerify(l, want, n-4); err != nil {
			t.Fatal(err)
		}
		if r := l.Recovery(); !r.TornTail || r.DroppedRecords != 3 {
			t.Fatalf("Recovery() = %+v, want TornTail with 3 dropped records", r)
		}
		b := rtReadFile(t, rtSegPath(dir, 1))
		end := locs[n].off + locs[n].size
		if !rtAllZero(b[locs[n-3].off:end]) {
			t.Fatalf("dropped range [%d, %d) is not zero on disk after recovery", locs[n-3].off, end)
		}
		return l
	}
	// appendEndingAt appends a record of the size that makes it end at
	// offset end and checks that it does.
	appendEndingAt := func(t *testing.T, l *Log, want *[][]byte, rng *rand.Rand, start, end int) {
		t.Helper()
		size := end - start - recHeaderSize
		if size < 0 || size%recAlign != 0 {
			t.Fatalf("cannot end a record at %d from %d", end, start)
		}
		idx := rtAppend(t, l, want, rtBytes(rng, size))
		got := rtLocate(t, l)[idx]
		if got.off != start || got.off+got.size != end {
			t.Fatalf("new record %d lies at [%d, %d), want [%d, %d)", idx, got.off, got.off+got.size, start, end)
		}
	}
	reopen := func(t *testing.T, dir string, want [][]byte) *Log {
		t.Helper()
		l := rtOpen(t, dir, rtOpts(false))
		if err := rtVerify(l, want, uint64(len(want)-1)); err != nil {
			t.Fatalf("old records came back or new ones were lost: %v", err)
		}
		if r := l.Recovery(); r.TornTail || r.DroppedRecords != 0 || r.Repaired {
			t.Fatalf("reopen after a clean close: %+v", r)
		}
		return l
	}

	t.Run("new record ends where old N-2 began", func(t *testing.T) {
		dir, want, locs := build(t)
		l := firstRecovery(t, dir, want, locs)
		rng := rand.New(rand.NewPCG(9, 1))
		want = want[: n-3 : n-3]
		appendEndingAt(t, l, &want, rng, locs[n-3].off, locs[n-2].off)
		rtClose(t, l)
		l = reopen(t, dir, want) // LastIndex N-3, not N
		// One more, ending where old N-1 began.
		appendEndingAt(t, l, &want, rng, locs[n-2].off, locs[n-1].off)
		rtClose(t, l)
		l = reopen(t, dir, want)
		if err := rtExercise(dir, l, want); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("two new records, the second ends where old N-1 began", func(t *testing.T) {
		dir, want, locs := build(t)
		l := firstRecovery(t, dir, want, locs)
		rng := rand.New(rand.NewPCG(9, 2))
		want = want[: n-3 : n-3]
		mid := locs[n-3].off + recSize(8)
		appendEndingAt(t, l, &want, rng, locs[n-3].off, mid)
		appendEndingAt(t, l, &want, rng, mid, locs[n-1].off)
		rtClose(t, l)
		l = reopen(t, dir, want)
		if err := rtExercise(dir, l, want); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("double crash", func(t *testing.T) {
		dir, want, locs := build(t)
		l := firstRecovery(t, dir, want, locs)
		rng := rand.New(rand.NewPCG(9, 3))
		want = want[: n-3 : n-3]
		// Second life: new N-3, N-2, N-1 each in the slot of the old one.
		for i := n - 3; i <= n-1; i++ {
			appendEndingAt(t, l, &want, rng, locs[i].off, locs[i+1].off)
		}
		rtClose(t, l)
		// Second crash: new N-2 torn, new N-1 complete.
		rtDamageRecord(t, dir, locs[n-2], rtTornDamages[1].fn)
		l = rtOpen(t, dir, rtOpts(false))
		want = want[: n-2 : n-2]
		if err := rtVerify(l, want, n-3); err != nil {
			t.Fatal(err)
		}
		if r := l.Recovery(); !r.TornTail || r.DroppedRecords != 1 {
			t.Fatalf("second recovery: %+v, want TornTail with 1 dropped record", r)
		}
		b := rtReadFile(t, rtSegPath(dir, 1))
		if !rtAllZero(b[locs[n-2].off:]) {
			t.Fatalf("second recovery did not zero the dropped range on disk")
		}
		// Third life: new N-2 ends where both old and second-life N-1
		// began; neither may return.
		appendEndingAt(t, l, &want, rng, locs[n-2].off, locs[n-1].off)
		rtClose(t, l)
		l = reopen(t, dir, want)
		if l.LastIndex() != n-2 {
			t.Fatalf("LastIndex %d, want %d", l.LastIndex(), n-2)
		}
		if err := rtExercise(dir, l, want); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRtActivationBlockDamage: a bit flipped in the activation block of a
// segment that holds records (the last, a sealed one, the first). The
// damaged segment must not be mistaken for a never-used one: Open without
// repair refuses it. With repair, whatever is cut, the repaired log must
// reopen, and once the log moves into that file's slot again its old
// records must not come back. Run on tmpfs with cache flush and on disk
// with msync (where prepared segments are not cleared when mapped).
func TestRtActivationBlockDamage(t *testing.T) {
	rtEnv(t)
	base := rtDir(t)
	want, locs := rtBuild(t, base, rtOpts(false), rand.New(rand.NewPCG(10, 10)), rtRepeat(160, 16000))
	segLast := rtSegLast(locs)
	n := uint64(len(want) - 1)
	if locs[n].seq != 3 {
		t.Fatalf("fixture: last record in segment %d, want 3", locs[n].seq)
	}
	clean := rtSnapshot(t, base)
	media := []struct {
		name    string
		dir     func(t *testing.T) string
		persist Persist
	}{
		{"tmpfs cacheflush", func(t *testing.T) string { return rtDir(t) }, PersistCacheFlush},
		{"disk msync", func(t *testing.T) string { return t.TempDir() }, PersistMsync},
	}
	for _, m := range media {
		opts := func(repair bool) *Options {
			o := rtOpts(repair)
			o.Persist = m.persist
			return o
		}
		for _, seq := range []uint64{3, 2, 1} {
			files := rtCopyFiles(clean)
			files[segName(seq)][activationOff] ^= 0x10
			t.Run(fmt.Sprintf("%s/segment %d", m.name, seq), func(t *testing.T) {
				t.Run("without repair", func(t *testing.T) {
					dir := rtMaterializeIn(t, m.dir(t), files)
					l, err := Open(dir, opts(false))
					if err == nil {
						last, r := l.LastIndex(), l.Recovery()
						l.Close()
						t.Fatalf("Open succeeded with LastIndex %d (records %d..%d of %s silently gone; report %+v); want ErrCorrupt",
							last, last+1, segLast[seq], segName(seq), r)
					}
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("Open: %v, want ErrCorrupt", err)
					}
				})
				t.Run("repair, then refill", func(t *testing.T) {
					dir := rtMaterializeIn(t, m.dir(t), files)
					l := rtOpen(t, dir, opts(true))
					last := l.LastIndex()
					if last < segLast[seq-1] {
						t.Fatalf("LastIndex %d: records of the undamaged segments before %s lost", last, segName(seq))
					}
					if err := rtVerify(l, want, last); err != nil {
						t.Fatal(err)
					}
					// Append new records with the old sizes, so the log
					// moves into the damaged file's slot again with the
					// same layout.
					w := slices.Clip(want[:last+1])
					rng := rand.New(rand.NewPCG(10, seq))
					for i := last + 1; i <= last+3; i++ {
						rtAppend(t, l, &w, rtBytes(rng, locs[i].len))
					}
					rtClose(t, l)
					l = rtOpen(t, dir, opts(false))
					if err := rtVerify(l, w, last+3); err != nil {
						t.Fatalf("old records came back after the log moved into %s again: %v", segName(seq), err)
					}
				})
			})
		}
	}
}

// rtCopyFiles returns a deep copy of files.
func rtCopyFiles(files map[string][]byte) map[string][]byte {
	m := make(map[string][]byte, len(files))
	for k, v := range files {
		m[k] = bytes.Clone(v)
	}
	return m
}

// rtFixture is the log TestRtFileDamage damages: segments 1..3 activated,
// 4 the prepared spare.
type rtFixture struct {
	want    [][]byte
	segLast map[uint64]uint64 // last index held by each activated segment
	n       uint64            // records written
}

// rtFileCase is one file-level damage and its expected outcome.
type rtFileCase struct {
	name    string
	damage  func(t *testing.T, dir string)
	corrupt bool     // Open without repair fails with ErrCorrupt; with repair it cuts
	errHas  []string // ...and the error text holds these (the file, the facts)
	last    func(fx *rtFixture) uint64
	reason  string                         // !corrupt: a Recovery().Reasons line and the logger hold this
	after   func(t *testing.T, dir string) // !corrupt: checks after the recovered log is closed
	meta    bool                           // the case damages the META file
}

// TestRtFileDamage: damage to whole files (truncation, removal, headers
// that do not describe their file, stray files). The table states the
// outcome each must have: ErrCorrupt without repair and a cut at the last
// good record with RepairCorruption, or, when nothing was lost, an Open
// that succeeds, keeps every record and says what it removed.
func TestRtFileDamage(t *testing.T) {
	rtEnv(t)
	base := rtDir(t)
	want, locs := rtBuild(t, base, rtOpts(false), rand.New(rand.NewPCG(11, 11)), rtRepeat(160, 16000))
	fx := &rtFixture{want: want, segLast: rtSegLast(locs), n: uint64(len(want) - 1)}
	if locs[fx.n].seq != 3 {
		t.Fatalf("fixture: last record in segment %d, want 3", locs[fx.n].seq)
	}
	files := rtSnapshot(t, base)
	var segFiles []string
	for name := range files {
		if _, ok := parseSegName(name); ok {
			segFiles = append(segFiles, name)
		}
	}
	slices.Sort(segFiles)
	if !slices.Equal(segFiles, []string{segName(1), segName(2), segName(3), segName(4)}) {
		t.Fatalf("fixture: segment files %v, want 1..4 (4 the spare)", segFiles)
	}
	_, hasMeta := files[metaName]

	truncate := func(seq uint64, size int) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			rtEdit(t, rtSegPath(dir, seq), func(b []byte) []byte { return b[:size] })
		}
	}
	edit := func(seq uint64, f func(b []byte)) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			rtEdit(t, rtSegPath(dir, seq), func(b []byte) []byte { f(b); return b })
		}
	}
	header := func(seq uint64, f func(h *segHeader)) func(*testing.T, string) {
		return edit(seq, func(b []byte) {
			h, why := decodeSegHeader(b)
			if why != "" {
				panic(why)
			}
			f(&h)
			encodeSegHeader(b, h) // a consistent header that describes another file
		})
	}
	remove := func(seq uint64) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.Remove(rtSegPath(dir, seq)); err != nil {
				t.Fatal(err)
			}
		}
	}
	create := func(name string, data []byte) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	gone := func(name string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is still there (stat: %v)", name, err)
			}
		}
	}
	// freshSpare: the removed spare may have been prepared again, but only
	// as a full, never-activated segment.
	freshSpare := func(t *testing.T, dir string) {
		rtCheckFreshSpare(t, dir, 4)
		if st, err := os.Stat(rtSegPath(dir, 4)); err == nil && st.Size() != rtSegSize {
			t.Errorf("%s has %d bytes, want %d", segName(4), st.Size(), rtSegSize)
		}
	}
	all := func(fx *rtFixture) uint64 { return fx.n }
	upTo := func(seq uint64) func(fx *rtFixture) uint64 {
		return func(fx *rtFixture) uint64 { return fx.segLast[seq] }
	}
	none := func(fx *rtFixture) uint64 { return 0 }
	foreign := map[string][]byte{
		"README":                        []byte("not a segment\n"),
		"x.swp":                         []byte("swap"),
		"123.seg":                       []byte("wrong digit count"),
		"123.seg.tmp":                   []byte("wrong digit count"),
		"00000000000000000000.seg":      []byte("sequence 0 is no segment"),
		"000000000000000000005.seg":     []byte("21 digits"),
		"00000000000000000002.seg.bak":  []byte("a backup"),
		"0000000000000000000x.seg":      []byte("not a number"),
		"00000000000000000005.segment":  []byte("other suffix"),
		"00000000000000000006.seg.tmp~": []byte("editor leftover"),
	}
	const neverHeld = "removed a segment file that never held records"

	cases := []rtFileCase{
		{name: "last segment truncated to half", damage: truncate(3, rtSegSize/2),
			corrupt: true, errHas: []string{segName(3), "1048576", "524288"}, last: upTo(2)},
		{name: "last segment truncated inside its header", damage: truncate(3, 100),
			corrupt: true, errHas: []string{segName(3), "shorter than a segment header"}, last: upTo(2)},
		{name: "middle segment truncated to half", damage: truncate(2, rtSegSize/2),
			corrupt: true, errHas: []string{segName(2), "1048576", "524288"}, last: upTo(1)},
		{name: "last segment longer than its header says", damage: edit(3, func([]byte) {}),
			corrupt: true, errHas: []string{segName(3), "1048576", "1052672"}, last: upTo(2)},
		{name: "zero-length middle segment", damage: truncate(2, 0),
			corrupt: true, last: upTo(1)},
		{name: "middle segment missing", damage: remove(2),
			corrupt: true, errHas: []string{"segment 2 missing", segName(3)}, last: upTo(1)},
		{name: "last activated segment missing", damage: remove(3),
			corrupt: true, errHas: []string{"segment 3 missing", segName(4)}, last: upTo(2)},
		{name: "first segment missing (the log would start at a later index)", damage: remove(1),
			corrupt: true, last: none},
		{name: "header seq names another segment", damage: header(2, func(h *segHeader) { h.seq = 7 }),
			corrupt: true, errHas: []string{segName(2), "header names segment 7"}, last: upTo(1)},
		{name: "header size field names another size", damage: header(3, func(h *segHeader) { h.size = 2 << 20 }),
			corrupt: true, errHas: []string{segName(3), "2097152", "1048576"}, last: upTo(2)},
		{name: "header size field out of range", damage: header(3, func(h *segHeader) { h.size = 12345 }),
			corrupt: true, errHas: []string{segName(3), "segment size out of range"}, last: upTo(2)},
		{name: "header version unsupported", damage: header(2, func(h *segHeader) { h.version = 2 }),
			corrupt: true, errHas: []string{segName(2), "unsupported format version"}, last: upTo(1)},
		{name: "bad magic in the first segment", damage: edit(1, func(b []byte) { b[0] = 'X' }),
			corrupt: true, errHas: []string{segName(1), "bad magic"}, last: none},
		{name: "header checksum flipped", damage: edit(2, func(b []byte) { b[56] ^= 1 }),
			corrupt: true, errHas: []string{segName(2), "checksum mismatch"}, last: upTo(1)},
		{name: "header salt flipped", damage: edit(3, func(b []byte) { b[33] ^= 4 }),
			corrupt: true, errHas: []string{segName(3), "checksum mismatch"}, last: upTo(2)},
		// A spare whose header cannot be read might have been activated:
		// refused, and repair loses nothing.
		{name: "spare with bad magic", damage: edit(4, func(b []byte) { b[1] ^= 0x20 }),
			corrupt: true, errHas: []string{segName(4), "bad magic"}, last: all},
		{name: "spare truncated to half", damage: truncate(4, rtSegSize/2),
			last: all, reason: neverHeld, after: freshSpare},
		{name: "spare truncated to zero length", damage: truncate(4, 0),
			last: all, reason: neverHeld, after: freshSpare},
		{name: "spare zero-filled, header included", damage: edit(4, func(b []byte) { clear(b) }),
			last: all, reason: neverHeld, after: freshSpare},
		{name: "zero-length segment file after the spare", damage: create(segName(5), nil),
			last: all, reason: neverHeld, after: gone(segName(5))},
		{name: "zero-length segment file after the last segment, spare missing",
			damage: func(t *testing.T, dir string) { remove(4)(t, dir); create(segName(4), nil)(t, dir) },
			last:   all, reason: neverHeld, after: freshSpare},
		{name: "leftover segment preparation", damage: create(segName(5)+".tmp", []byte("half-prepared")),
			last: all, reason: "removed an unfinished segment preparation", after: gone(segName(5) + ".tmp")},
		// META holds the log's first index; without it (or with it
		// damaged) a log with records cannot know where it starts.
		{name: "META missing", meta: true, damage: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, metaName)); err != nil {
				t.Fatal(err)
			}
		}, corrupt: true, errHas: []string{metaName}, last: all},
		{name: "META checksum flipped", meta: true, damage: func(t *testing.T, dir string) {
			rtEdit(t, filepath.Join(dir, metaName), func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
		}, corrupt: true, errHas: []string{metaName}, last: all},
		{name: "foreign files", damage: func(t *testing.T, dir string) {
			for name, b := range foreign {
				create(name, b)(t, dir)
			}
			if err := os.Mkdir(filepath.Join(dir, segName(9)), 0o700); err != nil {
				t.Fatal(err)
			}
		}, last: all, after: func(t *testing.T, dir string) {
			for name, b := range foreign {
				if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, b) {
					t.Errorf("foreign file %s: %q, %v; want it left alone", name, got, err)
				}
			}
			if st, err := os.Stat(filepath.Join(dir, segName(9))); err != nil || !st.IsDir() {
				t.Errorf("directory %s was not left alone: %v", segName(9), err)
			}
		}},
	}
	// Fix up the case that grows a file (edit cannot grow).
	for i := range cases {
		if cases[i].name == "last segment longer than its header says" {
			cases[i].damage = func(t *testing.T, dir string) {
				rtEdit(t, rtSegPath(dir, 3), func(b []byte) []byte { return append(b, make([]byte, 4096)...) })
			}
		}
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.meta && !hasMeta {
				t.Skip("this log format has no META file")
			}
			for _, repair := range []bool{false, true} {
				dir := rtMaterialize(t, files)
				c.damage(t, dir)
				var logBuf rtLogBuf
				o := rtOpts(repair)
				o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
				l, err := Open(dir, o)
				if c.corrupt && !repair {
					if err == nil {
						last := l.LastIndex()
						first := l.FirstIndex()
						l.Close()
						t.Fatalf("Open succeeded (FirstIndex %d, LastIndex %d); want ErrCorrupt", first, last)
					}
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("Open: %v; want ErrCorrupt", err)
					}
					for _, s := range append([]string{dir}, c.errHas...) {
						if !strings.Contains(err.Error(), s) {
							t.Errorf("error %q does not hold %q", err, s)
						}
					}
					continue
				}
				if err != nil {
					t.Fatalf("Open (repair %v): %v", repair, err)
				}
				t.Cleanup(func() { l.Close() })
				if err := rtVerify(l, want, c.last(fx)); err != nil {
					t.Fatalf("repair %v: %v", repair, err)
				}
				r := l.Recovery()
				if r.Repaired != c.corrupt {
					t.Errorf("repair %v: Recovery().Repaired = %v, want %v (%+v)", repair, r.Repaired, c.corrupt, r)
				}
				if !c.corrupt {
					if r.TornTail || r.DroppedRecords != 0 {
						t.Errorf("repair %v: nothing was lost, but Recovery() = %+v", repair, r)
					}
					if c.reason == "" && len(r.Reasons) != 0 {
						t.Errorf("repair %v: recovery acted: %q", repair, r.Reasons)
					}
					if c.reason != "" {
						if !slices.ContainsFunc(r.Reasons, func(s string) bool { return strings.Contains(s, c.reason) }) {
							t.Errorf("repair %v: Recovery().Reasons %q do not say %q", repair, r.Reasons, c.reason)
						}
						if !strings.Contains(logBuf.String(), c.reason) {
							t.Errorf("repair %v: the logger was not told %q: %q", repair, c.reason, logBuf.String())
						}
					}
				}
				rtClose(t, l)
				if c.after != nil {
					c.after(t, dir)
				}
				l = rtOpen(t, dir, rtOpts(false))
				if err := rtExercise(dir, l, want); err != nil {
					t.Fatalf("repair %v: %v", repair, err)
				}
			}
		})
	}
}

// rtFuzzBase is a closed log held in memory, with what was written.
type rtFuzzBase struct {
	files     map[string][]byte // every file but LOCK: segments (the spare included), META
	names     []string          // their names, segments in sequence order
	want      [][]byte          // want[i]: payload of record i
	locs      []rtRec
	batchLast []uint64 // batchLast[i]: last index of record i's batch
	desc      string
}

// rtBuildFuzzBase writes a random log (1 to 3 segments, singles and
// batches, payloads from 0 to 40 KB, a random in-flight bound) and keeps
// its files in memory.
func rtBuildFuzzBase(t *testing.T, rng *rand.Rand) *rtFuzzBase {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-rt-base-")
	if err != nil {
		dir = t.TempDir()
	}
	defer os.RemoveAll(dir)
	o := rtOpts(false)
	o.InFlightBound = []int64{0, 4096, 64 << 10}[rng.IntN(3)]
	target := 1000 + rng.IntN(5<<19)
	l := rtOpen(t, dir, o)
	b := &rtFuzzBase{want: [][]byte{nil}, batchLast: []uint64{0}}
	for total := 0; total < target; {
		count := 1
		if rng.IntN(5) == 0 {
			count = 2 + rng.IntN(5)
		}
		recs := make([][]byte, count)
		for i := range recs {
			var n int
			switch r := rng.IntN(20); {
			case r < 14:
				n = rng.IntN(200)
			case r < 19:
				n = rng.IntN(4000)
			default:
				n = rng.IntN(40000)
			}
			recs[i] = rtBytes(rng, n)
			total += recSize(n)
		}
		var first uint64
		if count == 1 {
			first, err = l.Append(recs[0])
		} else {
			first, err = l.AppendBatch(recs)
		}
		if err != nil || first != uint64(len(b.want)) {
			t.Fatalf("building: append = %d, %v; want index %d", first, err, len(b.want))
		}
		b.want = append(b.want, recs...)
		for range recs {
			b.batchLast = append(b.batchLast, first+uint64(count)-1)
		}
	}
	b.locs = rtLocate(t, l)
	rtClose(t, l)
	b.files = rtSnapshot(t, dir)
	for name := range b.files {
		b.names = append(b.names, name) // segment files and META, if any
	}
	slices.Sort(b.names)
	b.desc = fmt.Sprintf("%d records in %d segments, bound %d", len(b.want)-1, b.locs[len(b.locs)-1].seq, o.InFlightBound)
	return b
}

// protected returns the last index up to which every record (and its
// whole batch) lies before the first damaged byte (seq, off): recovery,
// with or without repair, must keep at least those. Damage to a header
// (off < segHeaderSize) counts as damage to the whole file.
func (b *rtFuzzBase) protected(seq uint64, off int) uint64 {
	var p uint64
	for i := uint64(1); i < uint64(len(b.want)); i = b.batchLast[i] + 1 {
		e := b.locs[b.batchLast[i]]
		if !(e.seq < seq || e.seq == seq && off >= segHeaderSize && e.off+e.size <= off) {
			break
		}
		p = b.batchLast[i]
	}
	return p
}

// rtRandomDamage damages files (a shallow copy of b.files) at random. It returns a
// description and the first damaged position.
func rtRandomDamage(rng *rand.Rand, b *rtFuzzBase, files map[string][]byte) (desc string, seq uint64, off int) {
	seq, off = math.MaxUint64, 0
	mark := func(name string, o int) {
		s, ok := parseSegName(name)
		if !ok {
			return // META: damage there loses no record
		}
		if s < seq || s == seq && o < off {
			seq, off = s, o
		}
	}
	var d strings.Builder
	n := len(b.want) - 1
	// files shares its slices with b.files: copy one before changing it.
	owned := make(map[string]bool)
	own := func(name string) []byte {
		if !owned[name] {
			files[name] = bytes.Clone(files[name])
			owned[name] = true
		}
		return files[name]
	}
	pick := func() string { return b.names[rng.IntN(len(b.names))] }
	spot := func() (string, int) {
		switch r := rng.IntN(10); {
		case r < 4: // inside a record
			loc := b.locs[1+rng.IntN(n)]
			return segName(loc.seq), loc.off + rng.IntN(loc.size)
		case r < 6: // a header or activation block
			name := pick()
			return name, rng.IntN(min(segHeaderSize, len(files[name])))
		default:
			name := pick()
			return name, rng.IntN(len(files[name]))
		}
	}
	switch kind := rng.IntN(6); kind {
	case 0:
		for range 1 + rng.IntN(3) {
			name, o := spot()
			bit := rng.IntN(8)
			own(name)[o] ^= 1 << bit
			mark(name, o)
			fmt.Fprintf(&d, "flip bit %d of %s byte %d; ", bit, name, o)
		}
	case 1, 2:
		name, o := spot()
		f := own(name)
		end := min(len(f), o+1+rng.IntN(8192))
		if kind == 1 {
			clear(f[o:end])
			fmt.Fprintf(&d, "zero %s [%d, %d)", name, o, end)
		} else {
			copy(f[o:end], rtBytes(rng, end-o))
			fmt.Fprintf(&d, "garbage over %s [%d, %d)", name, o, end)
		}
		mark(name, o)
	case 3:
		name := pick()
		size := rng.IntN(len(files[name]))
		files[name] = files[name][:size]
		mark(name, 0)
		fmt.Fprintf(&d, "truncate %s to %d bytes", name, size)
	case 4:
		name := pick()
		delete(files, name)
		mark(name, 0)
		fmt.Fprintf(&d, "delete %s", name)
	case 5: // a torn record near the tail
		i := max(1, n-rng.IntN(6))
		loc := b.locs[i]
		name := segName(loc.seq)
		o := loc.off + rng.IntN(loc.size/8)*8
		f := own(name)
		if rng.IntN(2) == 0 {
			clear(f[o : o+8])
			fmt.Fprintf(&d, "zero word %s byte %d (record %d of %d)", name, o, i, n)
		} else {
			o += rng.IntN(8)
			f[o] ^= 0x80
			fmt.Fprintf(&d, "flip %s byte %d (record %d of %d)", name, o, i, n)
		}
		mark(name, o)
	}
	return d.String(), seq, off
}

// rtWriteSparse writes data to a new file at path, leaving its zero tail
// as a hole (the file reads the same; the race detector checks fewer bytes).
func rtWriteSparse(t *testing.T, path string, data []byte) {
	t.Helper()
	var zero [4096]byte
	n := len(data)
	for n >= len(zero) && bytes.Equal(data[n-len(zero):n], zero[:]) {
		n -= len(zero)
	}
	for n > 0 && data[n-1] == 0 {
		n--
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(data[:n])
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// rtCatch runs f and returns a description of its panic, if any.
func rtCatch(f func()) (msg string) {
	defer func() {
		if p := recover(); p != nil {
			msg = fmt.Sprintf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	f()
	return ""
}

// rtFuzzOne opens a damaged copy of a base log without and with repair and
// returns every broken expectation.
func rtFuzzOne(t *testing.T, files map[string][]byte, b *rtFuzzBase, protected uint64) (outcome string, problems []string) {
	note := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	plainOK, plainLast := false, uint64(0)
	for _, repair := range []bool{false, true} {
		dir, err := os.MkdirTemp("/dev/shm", "pmwal-rt-fuzz-")
		if err != nil {
			dir = t.TempDir()
		}
		defer os.RemoveAll(dir)
		for name, data := range files {
			rtWriteSparse(t, filepath.Join(dir, name), data)
		}
		var l *Log
		if p := rtCatch(func() { l, err = Open(dir, rtOpts(repair)) }); p != "" {
			note("Open(repair=%v) %s", repair, p)
			continue
		}
		if err != nil {
			if !repair {
				outcome = "refused"
			}
			switch {
			case repair:
				note("Open with RepairCorruption failed: %v", err)
			case !errors.Is(err, ErrCorrupt):
				note("Open failed with an error that is not ErrCorrupt: %v", err)
			case !strings.Contains(err.Error(), dir):
				note("ErrCorrupt names no file of the log: %v", err)
			}
			continue
		}
		last, r := l.LastIndex(), l.Recovery()
		switch {
		case !repair:
			plainOK, plainLast = true, last
			outcome = "recovered, nothing dropped"
			if r.TornTail || r.DroppedRecords > 0 || len(r.DroppedFiles) > 0 {
				outcome = "recovered, tail dropped"
			}
			if r.Repaired {
				note("Open without RepairCorruption reports a repair: %+v", r)
			}
		case plainOK && (last != plainLast || r.Repaired):
			note("with repair: LastIndex %d, Repaired %v; without repair Open succeeded with LastIndex %d", last, r.Repaired, plainLast)
		case !plainOK && !r.Repaired:
			note("Open without repair refused the log, but the repairing Open reports no repair: %+v", r)
		}
		if last < protected {
			note("repair=%v: LastIndex %d, but records 1..%d lay before the damage", repair, last, protected)
		}
		var xerr error
		exercise := func() { xerr = rtExercise(dir, l, b.want) }
		if repair && plainOK {
			// The same files recovered the same way without repair, and
			// were exercised already: check the records only.
			exercise = func() {
				defer l.Close()
				if xerr = rtVerify(l, b.want, last); xerr == nil {
					xerr = l.Close()
				}
			}
		}
		if p := rtCatch(exercise); p != "" {
			note("repair=%v: %s", repair, p)
		} else if xerr != nil {
			note("repair=%v (recovered to LastIndex %d, report %+v): %v", repair, last, r, xerr)
		}
	}
	return outcome, problems
}

// TestRtRandomDamage applies random damage to random logs and checks
// that Open never panics, refuses with ErrCorrupt or recovers a log whose
// every record reads back as written, keeps every record that lay before
// the damage, and accepts the next Append; with RepairCorruption Open
// always succeeds. The run is reproducible: a failure names its seed and
// iteration, and RT_FUZZ_ITER=<iteration> replays just that one.
func TestRtRandomDamage(t *testing.T) {
	rtEnv(t)
	const seed1, seed2 = 0x706d77616c, 0x5eed2026
	iters, perBase := 200, 8
	only := -1
	if s := os.Getenv("RT_FUZZ_ITER"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("RT_FUZZ_ITER: %v", err)
		}
		only = v
		iters = v + 1
	}
	if testing.Short() {
		iters = min(iters, 60)
	}
	var base *rtFuzzBase
	baseIdx, fails := -1, 0
	const shown = 25 // failures printed in full
	outcomes := make(map[string]int)
	for iter := range iters {
		if only >= 0 && iter != only {
			continue
		}
		if bi := iter / perBase; bi != baseIdx {
			base, baseIdx = rtBuildFuzzBase(t, rand.New(rand.NewPCG(seed1+uint64(bi), seed2))), bi
		}
		rng := rand.New(rand.NewPCG(seed1, seed2^uint64(iter+1)*0x9e3779b97f4a7c15))
		files := make(map[string][]byte, len(base.files))
		for name, b := range base.files {
			files[name] = b
		}
		desc, dseq, doff := rtRandomDamage(rng, base, files)
		protected := base.protected(dseq, doff)
		outcome, problems := rtFuzzOne(t, files, base, protected)
		outcomes[outcome]++
		for _, p := range problems {
			fails++
			if fails > shown {
				continue
			}
			t.Errorf("seed=(%#x,%#x) iter=%d (replay: RT_FUZZ_ITER=%d) base %d [%s], damage: %s: %s",
				seed1, seed2, iter, iter, baseIdx, base.desc, desc, p)
		}
	}
	if fails > shown {
		t.Errorf("seed=(%#x,%#x): %d failures in %d iterations, %d not shown", seed1, seed2, fails, iters, fails-shown)
	}
	t.Logf("outcomes without repair: %v", outcomes)
	// The damage must exercise both sides: logs refused as corrupt and
	// logs recovered (a generator that only ever hits one is broken).
	if only < 0 && iters >= 50 && (outcomes["refused"] == 0 || outcomes["recovered, tail dropped"] == 0 || outcomes["recovered, nothing dropped"] == 0) {
		t.Errorf("seed=(%#x,%#x): the random damage did not reach every outcome: %v", seed1, seed2, outcomes)
	}
}
