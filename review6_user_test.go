package wal_test

// Review 6: the library tested as a user embedding it as a database commit
// log, against the contract in README.md, FORMAT.md, the godoc and
// example_test.go (black box: only the exported API and the files' names).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pmwal/wal"
)

const (
	u6Seg = 1 << 20
	// u6Max is the largest payload a fresh 1 MiB segment holds: the segment
	// less its 128-byte header and activation block, less a 32-byte record
	// header (FORMAT.md: a record occupies 32 + roundup8(length) bytes).
	u6Max = u6Seg - 128 - 32
)

// u6Env clears WAL_PERSIST so that the Options decide.
func u6Env(t *testing.T) {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
}

// u6Dir is a fresh directory on tmpfs (falling back to t.TempDir).
func u6Dir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-u6-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func u6Opts() *wal.Options {
	return &wal.Options{SegmentSize: u6Seg, Persist: wal.PersistCacheFlush}
}

func u6Open(t *testing.T, dir string, o *wal.Options) *wal.Log {
	t.Helper()
	l, err := wal.Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

func u6Close(t *testing.T, l *wal.Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// u6Payload is n bytes that name idx (in the first 8 bytes when n >= 8)
// and a generation gen, so a reader can tell which record it got.
func u6Payload(idx uint64, gen byte, n int) []byte {
	p := make([]byte, n)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], idx)
	copy(p, b[:])
	for i := 8; i < n; i++ {
		p[i] = byte(idx) ^ byte(i) ^ gen
	}
	return p
}

func u6Append(t *testing.T, l *wal.Log, data []byte) uint64 {
	t.Helper()
	idx, err := l.Append(data)
	if err != nil {
		t.Fatalf("Append(%d bytes): %v", len(data), err)
	}
	return idx
}

// u6Model is what the log must hold: records first..first+len(recs)-1.
type u6Model struct {
	first uint64
	recs  [][]byte
}

func (m *u6Model) last() uint64 { return m.first + uint64(len(m.recs)) - 1 }

// u6Check compares the log with the model through every read path.
func u6Check(t *testing.T, what string, l *wal.Log, m *u6Model) {
	t.Helper()
	if f, la := l.FirstIndex(), l.LastIndex(); f != m.first || la != m.last() {
		t.Fatalf("%s: FirstIndex..LastIndex = %d..%d, want %d..%d", what, f, la, m.first, m.last())
	}
	st := l.Stats()
	if st.FirstIndex != m.first || st.LastIndex != m.last() {
		t.Fatalf("%s: Stats FirstIndex..LastIndex = %d..%d, want %d..%d", what, st.FirstIndex, st.LastIndex, m.first, m.last())
	}
	for i, want := range m.recs {
		idx := m.first + uint64(i)
		got, err := l.Read(idx)
		if err != nil {
			t.Fatalf("%s: Read(%d): %v", what, idx, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: Read(%d) = %d bytes, want %d bytes as appended", what, idx, len(got), len(want))
		}
	}
	for _, idx := range []uint64{m.first - 1, m.last() + 1} {
		if _, err := l.Read(idx); !errors.Is(err, wal.ErrNotFound) {
			t.Fatalf("%s: Read(%d) outside %d..%d = %v, want ErrNotFound", what, idx, m.first, m.last(), err)
		}
	}
	it := l.Records(m.first)
	n := 0
	for idx, rec := range it.All() {
		if want := m.first + uint64(n); idx != want {
			t.Fatalf("%s: Records yielded index %d, want %d", what, idx, want)
		}
		if n >= len(m.recs) || !bytes.Equal(rec, m.recs[n]) {
			t.Fatalf("%s: Records yielded a wrong record at %d", what, idx)
		}
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("%s: Records(%d).Err() = %v", what, m.first, err)
	}
	if n != len(m.recs) {
		t.Fatalf("%s: Records yielded %d records, want %d", what, n, len(m.recs))
	}
}

// u6Session is a log under test and the model of what it must hold.
type u6Session struct {
	t   *testing.T
	dir string
	o   *wal.Options
	l   *wal.Log
	m   *u6Model
	gen byte
}

func u6Start(t *testing.T, o *wal.Options) *u6Session {
	t.Helper()
	dir := u6Dir(t)
	return &u6Session{t: t, dir: dir, o: o, l: u6Open(t, dir, o), m: &u6Model{first: 1}}
}

// add appends n records of size bytes, of a new generation of payloads (a
// record appended again at an index differs from the one cut there).
func (s *u6Session) add(n, size int) {
	s.t.Helper()
	s.gen++
	for range n {
		p := u6Payload(s.m.last()+1, s.gen, size)
		if idx := u6Append(s.t, s.l, p); idx != s.m.last()+1 {
			s.t.Fatalf("Append = %d, want %d", idx, s.m.last()+1)
		}
		s.m.recs = append(s.m.recs, p)
	}
}

// reopen checks the log against the model, closes and reopens it with the
// session's options, and checks it again.
func (s *u6Session) reopen(what string) {
	s.t.Helper()
	u6Check(s.t, what, s.l, s.m)
	u6Close(s.t, s.l)
	s.l = u6Open(s.t, s.dir, s.o)
	u6Check(s.t, what+", reopened", s.l, s.m)
}

// ---------------------------------------------------------------------------
// Empty logs and the edges of [FirstIndex, LastIndex].

func TestU6EmptyLog(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	m := &u6Model{first: 1}
	u6Check(t, "new log", l, m)
	for _, idx := range []uint64{0, 1, 2, math.MaxUint64} {
		if _, err := l.Read(idx); !errors.Is(err, wal.ErrNotFound) {
			t.Errorf("Read(%d) on an empty log = %v, want ErrNotFound", idx, err)
		}
	}
	st := l.Stats()
	if st.Records != 0 || st.Appends != 0 || st.Bytes != 0 {
		t.Errorf("new log Stats: Records %d Appends %d Bytes %d, want 0", st.Records, st.Appends, st.Bytes)
	}
	if r := l.Recovery(); r.TornTail || r.Repaired || r.Records != 0 || r.DroppedRecords != 0 || len(r.Dropped) != 0 {
		t.Errorf("new log Recovery: %+v, want nothing found or dropped", r)
	}
	// Truncations that are documented as no-ops on an empty log.
	if err := l.TruncateFront(1); err != nil {
		t.Errorf("TruncateFront(1) on an empty log: %v", err)
	}
	if err := l.TruncateFront(0); err != nil {
		t.Errorf("TruncateFront(0) on an empty log: %v", err)
	}
	if err := l.TruncateBack(0); err != nil { // FirstIndex()-1: empties the (empty) log
		t.Errorf("TruncateBack(0) on an empty log: %v", err)
	}
	if err := l.TruncateBack(5); err != nil { // past LastIndex: changes nothing
		t.Errorf("TruncateBack(5) on an empty log: %v", err)
	}
	u6Check(t, "after no-op truncations", l, m)
	// A tailer at the end waits; a cancelled context ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := l.Tail(1).Next(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Tail(1).Next with a cancelled context on an empty log = %v, want context.Canceled", err)
	}
	u6Close(t, l)

	l = u6Open(t, dir, u6Opts())
	u6Check(t, "reopened empty log", l, m)
	u6Close(t, l)

	ro := u6Open(t, dir, &wal.Options{ReadOnly: true})
	u6Check(t, "empty log read-only", ro, m)
	u6Close(t, ro)
}

func TestU6ReadAndRecordsAtEdges(t *testing.T) {
	u6Env(t)
	l := u6Open(t, u6Dir(t), u6Opts())
	defer l.Close()
	m := &u6Model{first: 1}
	for i := uint64(1); i <= 10; i++ {
		p := u6Payload(i, 0, int(i*3))
		u6Append(t, l, p)
		m.recs = append(m.recs, p)
	}
	if err := l.TruncateFront(4); err != nil {
		t.Fatal(err)
	}
	m.first, m.recs = 4, m.recs[3:]
	u6Check(t, "after TruncateFront(4)", l, m)

	_, err := l.Read(11)
	if !errors.Is(err, wal.ErrNotFound) {
		t.Fatalf("Read(11) = %v, want ErrNotFound", err)
	}
	// README: errors are "wrapped with the file, offset or index".
	if !strings.Contains(err.Error(), "11") {
		t.Errorf("Read(11) error %q does not name the index", err)
	}

	// Records from each edge.
	count := func(from uint64) (n int, first uint64, err error) {
		it := l.Records(from)
		for idx := range it.All() {
			if n == 0 {
				first = idx
			}
			n++
		}
		return n, first, it.Err()
	}
	if n, f, err := count(10); n != 1 || f != 10 || err != nil {
		t.Errorf("Records(LastIndex): %d records from %d, err %v; want exactly record 10", n, f, err)
	}
	if n, _, err := count(11); n != 0 || err != nil {
		t.Errorf("Records(LastIndex+1): %d records, err %v; want none and no error", n, err)
	}
	if n, _, err := count(3); n != 0 || !errors.Is(err, wal.ErrNotFound) {
		t.Errorf("Records(FirstIndex-1): %d records, err %v; want none and ErrNotFound", n, err)
	}
	if n, _, err := count(0); n != 0 || !errors.Is(err, wal.ErrNotFound) {
		t.Errorf("Records(0): %d records, err %v; want none and ErrNotFound", n, err)
	}

	// Breaking out of the loop is not an error.
	it := l.Records(4)
	for range it.All() {
		break
	}
	if err := it.Err(); err != nil {
		t.Errorf("Err after breaking out of the loop = %v, want nil", err)
	}

	// Tail before the first index: ErrNotFound.
	if _, _, err := l.Tail(3).Next(context.Background(), nil); !errors.Is(err, wal.ErrNotFound) {
		t.Errorf("Tail(FirstIndex-1).Next = %v, want ErrNotFound", err)
	}
	// Tail at the last record returns it at once, into the caller's buffer.
	buf := make([]byte, 0, 64)
	idx, rec, err := l.Tail(10).Next(nil, buf)
	if err != nil || idx != 10 || !bytes.Equal(rec, m.recs[len(m.recs)-1]) {
		t.Fatalf("Tail(10).Next = %d, %d bytes, %v; want record 10", idx, len(rec), err)
	}
	if len(rec) > 0 && &rec[0] != &buf[:1][0] {
		t.Errorf("Tail.Next did not append to buf[:0] although it had the capacity")
	}
}

// The iteration goes to LastIndex "as it was when each step began": records
// the loop body appends are yielded too.
func TestU6RecordsSeesAppendsFromBody(t *testing.T) {
	u6Env(t)
	l := u6Open(t, u6Dir(t), u6Opts())
	defer l.Close()
	u6Append(t, l, u6Payload(1, 0, 16))
	it := l.Records(1)
	var seen []uint64
	for idx, rec := range it.All() {
		if binary.LittleEndian.Uint64(rec) != idx {
			t.Fatalf("record %d holds the payload of %d", idx, binary.LittleEndian.Uint64(rec))
		}
		seen = append(seen, idx)
		if idx < 5 {
			u6Append(t, l, u6Payload(idx+1, 0, 16))
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 5 {
		t.Errorf("loop saw %v, want 1..5 (records appended by the body)", seen)
	}
}

// Read returns a copy; Append does not keep the caller's slice.
func TestU6CopiesAreTheCallers(t *testing.T) {
	u6Env(t)
	l := u6Open(t, u6Dir(t), u6Opts())
	defer l.Close()
	data := []byte("original")
	idx := u6Append(t, l, data)
	copy(data, "XXXXXXXX")
	got, err := l.Read(idx)
	if err != nil || string(got) != "original" {
		t.Fatalf("Read after the caller changed its buffer = %q, %v", got, err)
	}
	copy(got, "YYYYYYYY")
	again, err := l.Read(idx)
	if err != nil || string(again) != "original" {
		t.Fatalf("Read after the caller changed the previous Read's result = %q, %v", again, err)
	}
	batch := [][]byte{[]byte("b1"), []byte("b2")}
	first, err := l.AppendBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	batch[0][0], batch[1][0] = 'z', 'z'
	for i, want := range []string{"b1", "b2"} {
		if got, err := l.Read(first + uint64(i)); err != nil || string(got) != want {
			t.Errorf("Read(%d) = %q, %v, want %q", first+uint64(i), got, err, want)
		}
	}
}

// ---------------------------------------------------------------------------
// Truncation to the edges, with a reopen after every operation.

func TestU6TruncateFrontEdges(t *testing.T) {
	u6Env(t)
	s := u6Start(t, u6Opts())
	m, reopen := s.m, s.reopen
	add := func(n int) { s.add(n, 100) }
	tf := func(idx uint64) {
		t.Helper()
		if err := s.l.TruncateFront(idx); err != nil {
			t.Fatalf("TruncateFront(%d): %v", idx, err)
		}
	}
	add(10)
	tf(0) // below FirstIndex: nothing
	reopen("TruncateFront(0)")
	tf(1) // at FirstIndex: nothing
	reopen("TruncateFront(FirstIndex)")
	tf(10) // keep exactly one
	m.first, m.recs = 10, m.recs[9:]
	reopen("TruncateFront(LastIndex)")
	tf(11) // exactly everything: LastIndex+1
	m.first, m.recs = 11, nil
	reopen("TruncateFront(LastIndex+1)")
	add(1)
	reopen("append after emptying")
	tf(1000) // past the end
	m.first, m.recs = 1000, nil
	reopen("TruncateFront past the end")
	if _, err := s.l.Read(999); !errors.Is(err, wal.ErrNotFound) {
		t.Errorf("Read(999) after TruncateFront(1000) = %v", err)
	}
	if first, err := s.l.AppendBatch(nil); err != nil || first != 1000 {
		t.Errorf("empty AppendBatch after TruncateFront(1000) = %d, %v; want 1000", first, err)
	}
	add(3)
	reopen("appends after TruncateFront past the end")
	tf(999) // below: nothing
	reopen("TruncateFront below FirstIndex")
	u6Close(t, s.l)
}

func TestU6TruncateBackEdges(t *testing.T) {
	u6Env(t)
	s := u6Start(t, u6Opts())
	m, reopen := s.m, s.reopen
	add := func(n int) { s.add(n, 50) }
	tb := func(idx uint64) {
		t.Helper()
		if err := s.l.TruncateBack(idx); err != nil {
			t.Fatalf("TruncateBack(%d): %v", idx, err)
		}
	}
	add(10)
	tb(10) // at LastIndex: nothing
	tb(11)
	tb(math.MaxUint64)
	reopen("TruncateBack at or past LastIndex")
	tb(1) // keep exactly one
	m.recs = m.recs[:1]
	reopen("TruncateBack(FirstIndex)")
	add(5)
	reopen("appends after TruncateBack")
	tb(0) // FirstIndex-1: empty
	m.recs = nil
	reopen("TruncateBack(FirstIndex-1)")
	add(5)
	if err := s.l.TruncateFront(4); err != nil {
		t.Fatal(err)
	}
	m.first, m.recs = 4, m.recs[3:]
	if err := s.l.TruncateBack(2); !errors.Is(err, wal.ErrNotFound) {
		t.Errorf("TruncateBack(FirstIndex-2) = %v, want ErrNotFound", err)
	}
	if err := s.l.TruncateBack(0); !errors.Is(err, wal.ErrNotFound) {
		t.Errorf("TruncateBack(0) with FirstIndex 4 = %v, want ErrNotFound", err)
	}
	reopen("refused TruncateBack")
	tb(3) // FirstIndex-1 after a front truncation
	m.recs = nil
	reopen("TruncateBack(FirstIndex-1) after TruncateFront")
	add(2)
	reopen("appends after emptying from the back")
	// An empty log moved past the end, then emptied from the back again.
	if err := s.l.TruncateFront(100); err != nil {
		t.Fatal(err)
	}
	m.first, m.recs = 100, nil
	tb(99)
	reopen("TruncateBack(99) on an empty log at 100")
	if err := s.l.TruncateBack(98); !errors.Is(err, wal.ErrNotFound) {
		t.Errorf("TruncateBack(98) with FirstIndex 100 = %v, want ErrNotFound", err)
	}
	add(1)
	reopen("append at 100")
	u6Close(t, s.l)
}

// ---------------------------------------------------------------------------
// Record sizes: zero, maximum, exactly filling a segment.

func TestU6ZeroLengthRecords(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	m := &u6Model{first: 1}
	u6Append(t, l, nil)
	u6Append(t, l, []byte{})
	first, err := l.AppendBatch([][]byte{nil, {}, []byte("x"), nil})
	if err != nil || first != 3 {
		t.Fatalf("AppendBatch of empty records = %d, %v; want 3", first, err)
	}
	m.recs = [][]byte{{}, {}, {}, {}, []byte("x"), {}}
	u6Check(t, "zero-length records", l, m)
	tl := l.Tail(1)
	for i := uint64(1); i <= 6; i++ {
		idx, rec, err := tl.Next(context.Background(), nil)
		if err != nil || idx != i || !bytes.Equal(rec, m.recs[i-1]) {
			t.Fatalf("Tail.Next = %d, %q, %v; want %d, %q", idx, rec, err, i, m.recs[i-1])
		}
	}
	if st := l.Stats(); st.Records != 6 || st.Appends != 3 || st.Bytes != 1 {
		t.Errorf("Stats: Records %d Appends %d Bytes %d, want 6, 3, 1", st.Records, st.Appends, st.Bytes)
	}
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	u6Check(t, "zero-length records reopened", l, m)
	u6Close(t, l)
}

func TestU6MaximumRecord(t *testing.T) {
	u6Env(t)
	for _, bound := range []int64{0, 4096} {
		t.Run(fmt.Sprintf("bound%d", bound), func(t *testing.T) {
			dir := u6Dir(t)
			o := u6Opts()
			o.InFlightBound = bound
			l := u6Open(t, dir, o)
			m := &u6Model{first: 1}
			big := u6Payload(1, 9, u6Max)
			u6Append(t, l, big)
			m.recs = append(m.recs, big)
			// One byte more does not fit any segment: ErrTooLarge, nothing written.
			before := l.Stats()
			if _, err := l.Append(make([]byte, u6Max+1)); !errors.Is(err, wal.ErrTooLarge) {
				t.Fatalf("Append(%d bytes) = %v, want ErrTooLarge", u6Max+1, err)
			}
			if _, err := l.AppendBatch([][]byte{make([]byte, u6Max/2), make([]byte, u6Max/2)}); !errors.Is(err, wal.ErrTooLarge) {
				t.Fatalf("AppendBatch over a segment = %v, want ErrTooLarge", err)
			}
			if after := l.Stats(); after.Appends != before.Appends || after.Records != before.Records || after.LastIndex != before.LastIndex {
				t.Fatalf("a refused append changed the log: %+v -> %+v", before, after)
			}
			// A small record, then the maximum again: it needs a segment of its own.
			small := u6Payload(2, 9, 10)
			u6Append(t, l, small)
			big3 := u6Payload(3, 9, u6Max)
			u6Append(t, l, big3)
			m.recs = append(m.recs, small, big3)
			// A batch that exactly fills a segment: two records of 32+X bytes each.
			half := (u6Seg-128)/2 - 32
			b1, b2 := u6Payload(4, 9, half), u6Payload(5, 9, half)
			if first, err := l.AppendBatch([][]byte{b1, b2}); err != nil || first != 4 {
				t.Fatalf("AppendBatch filling a segment = %d, %v", first, err)
			}
			m.recs = append(m.recs, b1, b2)
			u6Check(t, "maximum records", l, m)
			u6Close(t, l)
			l = u6Open(t, dir, o)
			u6Check(t, "maximum records reopened", l, m)
			if r := l.Recovery(); r.TornTail || r.DroppedRecords != 0 || len(r.Dropped) != 0 {
				t.Errorf("a clean reopen dropped something: %+v", r)
			}
			u6Close(t, l)
		})
	}
}

// A segment filled to its last byte: the next record goes to a new segment,
// and a reopen in either state keeps everything.
func TestU6RecordsExactlyFillSegment(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	m := &u6Model{first: 1}
	room := u6Seg - 128
	// 8 records of 32+X, the last one taking what is left.
	for i := range 8 {
		n := room/8 - 32
		if i == 7 {
			n = room - 7*(room/8) - 32
		}
		p := u6Payload(uint64(i+1), 3, n)
		u6Append(t, l, p)
		m.recs = append(m.recs, p)
	}
	if st := l.Stats(); st.BytesFree != 0 {
		t.Errorf("segment full to the byte: Stats.BytesFree = %d, want 0", st.BytesFree)
	}
	u6Check(t, "full segment", l, m)
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	u6Check(t, "full segment reopened", l, m)
	if r := l.Recovery(); r.TornTail || len(r.Dropped) != 0 {
		t.Errorf("reopening a full segment dropped something: %+v", r)
	}
	p := u6Payload(9, 3, 0)
	u6Append(t, l, p)
	m.recs = append(m.recs, p)
	if st := l.Stats(); st.Segments != 2 {
		t.Errorf("after the record past a full segment: %d segments, want 2", st.Segments)
	}
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	u6Check(t, "second segment reopened", l, m)
	u6Close(t, l)
}

// ---------------------------------------------------------------------------
// Batches of 0, 1 and many.

func TestU6Batches(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	m := &u6Model{first: 1}
	for _, b := range [][][]byte{nil, {}} {
		first, err := l.AppendBatch(b)
		if err != nil || first != 1 {
			t.Fatalf("empty AppendBatch on a new log = %d, %v; want 1, nil", first, err)
		}
	}
	if st := l.Stats(); st.Appends != 0 || st.LastIndex != 0 {
		t.Errorf("empty batches counted as writes: %+v", st)
	}
	one := [][]byte{[]byte("one")}
	if first, err := l.AppendBatch(one); err != nil || first != 1 {
		t.Fatalf("AppendBatch of 1 = %d, %v", first, err)
	}
	m.recs = append(m.recs, one...)
	var many [][]byte
	for i := range 1000 {
		many = append(many, u6Payload(uint64(i+2), 5, i%50))
	}
	if first, err := l.AppendBatch(many); err != nil || first != 2 {
		t.Fatalf("AppendBatch of 1000 = %d, %v", first, err)
	}
	m.recs = append(m.recs, many...)
	if first, err := l.AppendBatch(nil); err != nil || first != 1002 {
		t.Errorf("empty AppendBatch after 1001 records = %d, %v; want 1002", first, err)
	}
	if st := l.Stats(); st.Appends != 2 || st.Records != 1001 {
		t.Errorf("Stats after batches: Appends %d Records %d, want 2, 1001", st.Appends, st.Records)
	}
	u6Check(t, "batches", l, m)
	// A TruncateBack into the middle of the big batch keeps its start.
	if err := l.TruncateBack(500); err != nil {
		t.Fatal(err)
	}
	m.recs = m.recs[:500]
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	u6Check(t, "batch cut in the middle, reopened", l, m)
	u6Close(t, l)
}

// ---------------------------------------------------------------------------
// Options.

func TestU6InvalidOptionsRefused(t *testing.T) {
	u6Env(t)
	base := u6Dir(t)
	bad := []wal.Options{
		{SegmentSize: u6Seg, InFlightBound: -1},
		{SegmentSize: u6Seg, InFlightBound: 4095},
		{SegmentSize: u6Seg, InFlightBound: math.MinInt64},
		{SegmentSize: u6Seg, RecycleSegments: -1},
		{SegmentSize: 4 << 30},
		{SegmentSize: math.MaxInt64},
		{SegmentSize: math.MinInt64},
		{SegmentSize: u6Seg, Persist: wal.Persist(4)},
		{SegmentSize: u6Seg, Persist: wal.Persist(math.MaxInt)},
	}
	for i, o := range bad {
		dir := filepath.Join(base, fmt.Sprint("bad", i))
		before := o
		var l *wal.Log
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("Open with %+v panicked: %v", before, p)
				}
			}()
			l, err = wal.Open(dir, &o)
		}()
		if err == nil && l != nil {
			l.Close()
			t.Errorf("Open with %+v succeeded, want an error", before)
		}
		if o != before {
			t.Errorf("Open changed invalid Options %+v to %+v", before, o)
		}
	}
}

func TestU6OptionsNotModified(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	o := wal.Options{}
	l := u6Open(t, dir, &o)
	u6Append(t, l, []byte("x"))
	u6Close(t, l)
	if o != (wal.Options{}) {
		t.Errorf("Open filled in defaults in the caller's zero Options: %+v", o)
	}
	o = wal.Options{SegmentSize: u6Seg, RecycleSegments: 2, InFlightBound: 1 << 40, ReadOnly: true}
	before := o
	ro := u6Open(t, dir, &o)
	u6Close(t, ro)
	if o != before {
		t.Errorf("read-only Open changed the Options: %+v -> %+v", before, o)
	}
}

func TestU6OpenCreatesParents(t *testing.T) {
	u6Env(t)
	dir := filepath.Join(u6Dir(t), "a", "b", "c")
	l := u6Open(t, dir, u6Opts())
	u6Append(t, l, []byte("x"))
	u6Close(t, l)
	// A file where the directory should be is an error, not a panic.
	file := filepath.Join(u6Dir(t), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := wal.Open(file, u6Opts()); err == nil {
		l.Close()
		t.Errorf("Open on a regular file succeeded")
	}
}

// ---------------------------------------------------------------------------
// Close and use after Close.

func TestU6UseAfterCloseEveryMethod(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	for i := range 5 {
		u6Append(t, l, u6Payload(uint64(i+1), 0, 20))
	}
	itBefore := l.Records(1)
	tlBefore := l.Tail(1)
	u6Close(t, l)

	if err := l.TruncateFront(3); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("TruncateFront after Close = %v, want ErrClosed", err)
	}
	if err := l.TruncateFront(100); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("TruncateFront past the end after Close = %v, want ErrClosed", err)
	}
	if err := l.TruncateBack(3); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("TruncateBack after Close = %v, want ErrClosed", err)
	}
	for _, it := range []*wal.Iterator{itBefore, l.Records(1)} {
		n := 0
		for range it.All() {
			n++
		}
		if n != 0 || !errors.Is(it.Err(), wal.ErrClosed) {
			t.Errorf("Records after Close yielded %d records, Err %v; want none and ErrClosed", n, it.Err())
		}
	}
	for _, tl := range []*wal.Tailer{tlBefore, l.Tail(1)} {
		if _, _, err := tl.Next(context.Background(), nil); !errors.Is(err, wal.ErrClosed) {
			t.Errorf("Tailer.Next after Close = %v, want ErrClosed", err)
		}
	}
	// The accessors do not panic after Close.
	_ = l.FirstIndex()
	_ = l.LastIndex()
	_ = l.Stats()
	_ = l.Persist()
	_ = l.Hardware()
	_ = l.Recovery()
	// Nothing changed.
	l = u6Open(t, dir, u6Opts())
	if l.FirstIndex() != 1 || l.LastIndex() != 5 {
		t.Errorf("after use of a closed log: %d..%d, want 1..5", l.FirstIndex(), l.LastIndex())
	}
	u6Close(t, l)
}

// A Tailer waiting for the next record returns when the Log is closed.
func TestU6CloseWakesWaitingTailer(t *testing.T) {
	u6Env(t)
	l := u6Open(t, u6Dir(t), u6Opts())
	u6Append(t, l, []byte("1"))
	tl := l.Tail(1)
	if idx, _, err := tl.Next(context.Background(), nil); idx != 1 || err != nil {
		t.Fatalf("Next = %d, %v", idx, err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := tl.Next(context.Background(), nil)
		done <- err
	}()
	u6Close(t, l)
	select {
	case err := <-done:
		if !errors.Is(err, wal.ErrClosed) {
			t.Errorf("waiting Next after Close = %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("a tailer waiting at the end was not woken by Close")
	}
}

// Close beside concurrent appends: every acknowledged record is there after
// a reopen, the rest fail with ErrClosed.
func TestU6CloseDuringAppends(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	var wg sync.WaitGroup
	var started atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				p := []byte(fmt.Sprintf("g%d-%d", g, i))
				idx, err := l.Append(p)
				started.Add(1)
				if err != nil {
					if !errors.Is(err, wal.ErrClosed) {
						t.Errorf("Append during Close = %v, want ErrClosed", err)
					}
					return
				}
				mu.Lock()
				acked[idx] = p
				mu.Unlock()
			}
		}()
	}
	for started.Load() < 200 {
		runtime.Gosched()
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close during appends: %v", err)
	}
	wg.Wait()
	l = u6Open(t, dir, u6Opts())
	defer l.Close()
	for idx, p := range acked {
		got, err := l.Read(idx)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("acknowledged record %d: %q, %v; want %q", idx, got, err, p)
		}
	}
	if uint64(len(acked)) != l.LastIndex() {
		t.Errorf("%d acknowledged records, log holds 1..%d", len(acked), l.LastIndex())
	}
}

// ---------------------------------------------------------------------------
// Concurrency: readers, iterators and tailers while appending and truncating.

func TestU6ConcurrentReadersAppendTruncateFront(t *testing.T) {
	u6Env(t)
	l := u6Open(t, u6Dir(t), &wal.Options{SegmentSize: u6Seg, Persist: wal.PersistCacheFlush, RecycleSegments: 2})
	defer l.Close()
	const total = 6000
	check := func(what string, idx uint64, rec []byte) {
		if len(rec) < 8 || binary.LittleEndian.Uint64(rec) != idx || !bytes.Equal(rec, u6Payload(idx, 7, len(rec))) {
			t.Errorf("%s: record %d does not hold what was appended at %d", what, idx, idx)
		}
	}
	var wg sync.WaitGroup
	var done atomic.Bool
	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		defer done.Store(true)
		for i := uint64(1); i <= total; {
			n := 1 + int(i%4)
			var b [][]byte
			for j := range n {
				b = append(b, u6Payload(i+uint64(j), 7, 8+int((i+uint64(j))%700)))
			}
			first, err := l.AppendBatch(b)
			if err != nil || first != i {
				t.Errorf("AppendBatch = %d, %v; want %d", first, err, i)
				return
			}
			i += uint64(n)
		}
	}()
	wg.Add(1)
	go func() { // front truncation, keeping the last 500 or so
		defer wg.Done()
		for !done.Load() {
			if last := l.LastIndex(); last > 500 {
				if err := l.TruncateFront(last - 500); err != nil {
					t.Errorf("TruncateFront: %v", err)
					return
				}
			}
			runtime.Gosched()
		}
	}()
	for r := range 2 { // readers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; !done.Load(); k++ {
				f, la := l.FirstIndex(), l.LastIndex()
				if la < f {
					continue
				}
				idx := f + uint64(k*7919+r)%(la-f+1)
				rec, err := l.Read(idx)
				if err != nil {
					if !errors.Is(err, wal.ErrNotFound) || idx >= l.FirstIndex() {
						t.Errorf("Read(%d) = %v (log now %d..%d)", idx, err, l.FirstIndex(), l.LastIndex())
						return
					}
					continue
				}
				check("Read", idx, rec)
			}
		}()
	}
	wg.Add(1)
	go func() { // iterators
		defer wg.Done()
		for !done.Load() {
			it := l.Records(l.FirstIndex())
			prev := uint64(0)
			for idx, rec := range it.All() {
				if prev != 0 && idx != prev+1 {
					t.Errorf("iterator went from %d to %d", prev, idx)
				}
				prev = idx
				check("Records", idx, rec)
			}
			if err := it.Err(); err != nil && !errors.Is(err, wal.ErrNotFound) {
				t.Errorf("Records.Err = %v", err)
			}
		}
	}()
	// A tailer from 1 falls behind the truncation at some point or reads
	// everything; either way it never sees a wrong or skipped record.
	tl := l.Tail(1)
	next := uint64(1)
	for next <= total {
		idx, rec, err := tl.Next(context.Background(), nil)
		if errors.Is(err, wal.ErrNotFound) {
			next = l.FirstIndex()
			tl = l.Tail(next)
			continue
		}
		if err != nil || idx != next {
			t.Fatalf("Tailer.Next = %d, %v; want %d", idx, err, next)
		}
		check("Tail", idx, rec)
		next++
	}
	wg.Wait()
}

// Readers beside TruncateBack: whatever they read at an index is a record
// that was appended at that index, and a tailer is told when the records it
// returned are gone.
func TestU6ConcurrentReadersTruncateBack(t *testing.T) {
	u6Env(t)
	l := u6Open(t, u6Dir(t), u6Opts())
	defer l.Close()
	check := func(what string, idx uint64, rec []byte) {
		if len(rec) < 9 || binary.LittleEndian.Uint64(rec) != idx || !bytes.Equal(rec, u6Payload(idx, rec[8]^byte(idx)^8, len(rec))) {
			t.Errorf("%s: record %d is not a record appended at %d", what, idx, idx)
		}
	}
	var wg sync.WaitGroup
	var done atomic.Bool
	// Canceled once the appends are over: the tailer's Next returns every
	// record still there, then context.Canceled instead of waiting. (A
	// context canceled only when the loop below saw done could come too
	// late: done set between that check and Next's wait left Next waiting
	// for appends that would never come; it hung once under -race.)
	appended, stopTail := context.WithCancel(context.Background())
	defer stopTail()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stopTail()
		defer done.Store(true)
		for round := range 200 {
			gen := byte(round)
			for range 20 {
				idx := l.LastIndex() + 1
				if got, err := l.Append(u6Payload(idx, gen, 64)); err != nil || got != idx {
					t.Errorf("Append = %d, %v; want %d", got, err, idx)
					return
				}
			}
			if err := l.TruncateBack(l.LastIndex() - 15); err != nil {
				t.Errorf("TruncateBack: %v", err)
				return
			}
		}
	}()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				la := l.LastIndex()
				if la == 0 {
					continue
				}
				rec, err := l.Read(la)
				if err != nil {
					if !errors.Is(err, wal.ErrNotFound) {
						t.Errorf("Read(%d) = %v", la, err)
					}
					continue
				}
				check("Read", la, rec)
			}
		}()
	}
	tl := l.Tail(1)
	for tl != nil {
		idx, rec, err := tl.Next(appended, nil)
		switch {
		case err == nil:
			check("Tail", idx, rec)
		case errors.Is(err, wal.ErrNotFound):
			tl = l.Tail(l.FirstIndex())
		case errors.Is(err, context.Canceled):
			tl = nil
		default:
			t.Fatalf("Tailer.Next: %v", err)
		}
	}
	wg.Wait()
}

// ---------------------------------------------------------------------------
// Read-only opens beside a writer.

func TestU6ReadOnlyBesideWriter(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	w := u6Open(t, dir, u6Opts())
	for i := range 3 {
		u6Append(t, w, u6Payload(uint64(i+1), 0, 30))
	}
	if ro, err := wal.Open(dir, &wal.Options{ReadOnly: true}); !errors.Is(err, wal.ErrLocked) {
		if err == nil {
			ro.Close()
		}
		t.Fatalf("read-only Open beside a writer = %v, want ErrLocked", err)
	}
	// A second writer too.
	if w2, err := wal.Open(dir, u6Opts()); !errors.Is(err, wal.ErrLocked) {
		if err == nil {
			w2.Close()
		}
		t.Fatalf("second writer Open = %v, want ErrLocked", err)
	}
	u6Close(t, w)

	ro1 := u6Open(t, dir, &wal.Options{ReadOnly: true})
	ro2 := u6Open(t, dir, &wal.Options{ReadOnly: true}) // shared lock: two readers
	if w, err := wal.Open(dir, u6Opts()); !errors.Is(err, wal.ErrLocked) {
		if err == nil {
			w.Close()
		}
		t.Fatalf("writer Open beside a read-only one = %v, want ErrLocked", err)
	}
	for _, ro := range []*wal.Log{ro1, ro2} {
		if ro.FirstIndex() != 1 || ro.LastIndex() != 3 {
			t.Errorf("read-only log %d..%d, want 1..3", ro.FirstIndex(), ro.LastIndex())
		}
		if _, err := ro.Append([]byte("x")); !errors.Is(err, wal.ErrReadOnly) {
			t.Errorf("read-only Append = %v, want ErrReadOnly", err)
		}
		if _, err := ro.AppendBatch([][]byte{[]byte("x")}); !errors.Is(err, wal.ErrReadOnly) {
			t.Errorf("read-only AppendBatch = %v, want ErrReadOnly", err)
		}
		if err := ro.TruncateFront(2); !errors.Is(err, wal.ErrReadOnly) {
			t.Errorf("read-only TruncateFront = %v, want ErrReadOnly", err)
		}
		if err := ro.TruncateBack(2); !errors.Is(err, wal.ErrReadOnly) {
			t.Errorf("read-only TruncateBack = %v, want ErrReadOnly", err)
		}
		if rec, err := ro.Read(2); err != nil || !bytes.Equal(rec, u6Payload(2, 0, 30)) {
			t.Errorf("read-only Read(2) = %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := ro.Tail(4).Next(ctx, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("read-only Tail at the end, cancelled = %v", err)
		}
	}
	u6Close(t, ro1)
	u6Close(t, ro2)
	w = u6Open(t, dir, u6Opts())
	if w.LastIndex() != 3 {
		t.Errorf("writer after read-only opens: LastIndex %d, want 3", w.LastIndex())
	}
	u6Close(t, w)
}

// The documented no-op forms of the changes are changes asked of a
// read-only log too: "Append, AppendBatch and the truncations fail with
// ErrReadOnly".
func TestU6ReadOnlyRefusesNoOpChanges(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	w := u6Open(t, dir, u6Opts())
	u6Append(t, w, []byte("a"))
	u6Close(t, w)
	ro := u6Open(t, dir, &wal.Options{ReadOnly: true})
	defer ro.Close()
	if _, err := ro.AppendBatch(nil); !errors.Is(err, wal.ErrReadOnly) {
		t.Errorf("read-only empty AppendBatch = %v, want ErrReadOnly", err)
	}
	if err := ro.TruncateFront(0); !errors.Is(err, wal.ErrReadOnly) {
		t.Errorf("read-only TruncateFront(0) = %v, want ErrReadOnly", err)
	}
	if err := ro.TruncateBack(5); !errors.Is(err, wal.ErrReadOnly) {
		t.Errorf("read-only TruncateBack past the end = %v, want ErrReadOnly", err)
	}
}

func TestU6ReadOnlyNoLogCreatesNothing(t *testing.T) {
	u6Env(t)
	base := u6Dir(t)
	missing := filepath.Join(base, "missing")
	if l, err := wal.Open(missing, &wal.Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			l.Close()
		}
		t.Errorf("read-only Open of a missing directory = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only Open created %s", missing)
	}
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if l, err := wal.Open(empty, &wal.Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			l.Close()
		}
		t.Errorf("read-only Open of an empty directory = %v, want fs.ErrNotExist", err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("read-only Open wrote into an empty directory: %v", ents)
	}
}

// ---------------------------------------------------------------------------
// Errors carry context.

func TestU6CorruptionNamesFileAndOffset(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	o := u6Opts()
	l := u6Open(t, dir, o)
	m := &u6Model{first: 1}
	for i := range 40 {
		p := u6Payload(uint64(i+1), 2, 60<<10)
		u6Append(t, l, p)
		m.recs = append(m.recs, p)
	}
	if st := l.Stats(); st.Segments < 2 {
		t.Fatalf("want at least 2 segments, have %d", st.Segments)
	}
	u6Close(t, l)
	// Flip a payload byte of the third record of the first (sealed) segment.
	seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	recSize := int64(32 + 60<<10)
	off := 128 + 2*recSize + 32 + 100
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = wal.Open(dir, o)
	if !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("Open of a damaged sealed segment = %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), fmt.Sprint(128+2*recSize)) {
		t.Errorf("ErrCorrupt %q does not name file %s and record offset %d", err, seg, 128+2*recSize)
	}
	// A read-only Open says the same and changes nothing.
	if _, err := wal.Open(dir, &wal.Options{ReadOnly: true}); !errors.Is(err, wal.ErrCorrupt) {
		t.Errorf("read-only Open of a corrupt log = %v, want ErrCorrupt", err)
	}
	// Read-only with RepairCorruption shows what the repair would keep.
	ro := u6Open(t, dir, &wal.Options{ReadOnly: true, RepairCorruption: true})
	if ro.LastIndex() != 2 || !ro.Recovery().Repaired {
		t.Errorf("read-only repair view: LastIndex %d Repaired %v, want 2, true", ro.LastIndex(), ro.Recovery().Repaired)
	}
	u6Close(t, ro)
	o2 := *o
	o2.RepairCorruption = true
	l = u6Open(t, dir, &o2)
	m.recs = m.recs[:2]
	u6Check(t, "repaired", l, m)
	if r := l.Recovery(); !r.Repaired || len(r.Dropped) == 0 || len(r.Reasons) == 0 {
		t.Errorf("Recovery after a repair: %+v", r)
	}
	p := u6Payload(3, 4, 10)
	u6Append(t, l, p)
	m.recs = append(m.recs, p)
	u6Close(t, l)
	l = u6Open(t, dir, o)
	u6Check(t, "repaired and reopened without RepairCorruption", l, m)
	u6Close(t, l)
}

func TestU6ErrorsNameWhat(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	defer l.Close()
	_, err := l.Append(make([]byte, u6Seg))
	if !errors.Is(err, wal.ErrTooLarge) {
		t.Fatalf("Append(1 MiB) = %v, want ErrTooLarge", err)
	}
	_, err = wal.Open(dir, u6Opts())
	if !errors.Is(err, wal.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("ErrLocked %q does not name the directory", err)
	}
}

// ---------------------------------------------------------------------------
// Index limits.

func TestU6IndexExhausted(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	if err := l.TruncateFront(math.MaxUint64 - 2); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendBatch([][]byte{[]byte("a"), []byte("b"), []byte("c")}); !errors.Is(err, wal.ErrIndexExhausted) {
		t.Fatalf("batch of 3 from 2^64-3 = %v, want ErrIndexExhausted", err)
	}
	if l.LastIndex() != math.MaxUint64-3 {
		t.Fatalf("a refused batch changed LastIndex to %d", l.LastIndex())
	}
	first, err := l.AppendBatch([][]byte{[]byte("a"), []byte("b")})
	if err != nil || first != math.MaxUint64-2 {
		t.Fatalf("batch of 2 from 2^64-3 = %d, %v", first, err)
	}
	if _, err := l.Append(nil); !errors.Is(err, wal.ErrIndexExhausted) {
		t.Fatalf("Append past 2^64-2 = %v, want ErrIndexExhausted", err)
	}
	// No record can get 2^64-1: an empty batch must not offer it as the next.
	if idx, err := l.AppendBatch(nil); !errors.Is(err, wal.ErrIndexExhausted) {
		t.Fatalf("empty AppendBatch after 2^64-2 = %d, %v; want ErrIndexExhausted", idx, err)
	}
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	defer l.Close()
	m := &u6Model{first: math.MaxUint64 - 2, recs: [][]byte{[]byte("a"), []byte("b")}}
	if l.FirstIndex() != m.first || l.LastIndex() != m.last() {
		t.Fatalf("reopened: %d..%d", l.FirstIndex(), l.LastIndex())
	}
	for i, want := range m.recs {
		if got, err := l.Read(m.first + uint64(i)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Read(%d) = %q, %v", m.first+uint64(i), got, err)
		}
	}
	if err := l.TruncateBack(math.MaxUint64 - 2); err != nil {
		t.Fatal(err)
	}
	if idx, err := l.Append([]byte("again")); err != nil || idx != math.MaxUint64-1 {
		t.Fatalf("Append after TruncateBack at the top = %d, %v", idx, err)
	}
}

// ---------------------------------------------------------------------------
// Stats.

func TestU6Stats(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	if l.Stats().Persist != l.Persist() || l.Persist() != wal.PersistCacheFlush {
		t.Errorf("Stats.Persist %v, Persist() %v, want cacheflush", l.Stats().Persist, l.Persist())
	}
	var payload uint64
	for i := range 10 {
		payload += uint64(i * 10)
		u6Append(t, l, make([]byte, i*10))
	}
	if _, err := l.AppendBatch([][]byte{make([]byte, 5), make([]byte, 7)}); err != nil {
		t.Fatal(err)
	}
	payload += 12
	st := l.Stats()
	if st.Appends != 11 || st.Records != 12 || st.Bytes != payload {
		t.Errorf("Stats: Appends %d Records %d Bytes %d, want 11, 12, %d", st.Appends, st.Records, st.Bytes, payload)
	}
	if st.Segments != 1 || st.LastIndex != 12 || st.FirstIndex != 1 {
		t.Errorf("Stats: Segments %d, %d..%d", st.Segments, st.FirstIndex, st.LastIndex)
	}
	var used int64 = 128
	for i := range 10 {
		used += 32 + int64((i*10+7)&^7)
	}
	used += 32 + 8 + 32 + 8
	// "bytes of records and headers": whether the segment's 128-byte header
	// counts is not said; the library counts record headers only.
	if (st.BytesUsed != used && st.BytesUsed != used-128) || st.BytesFree != u6Seg-used {
		t.Errorf("Stats: BytesUsed %d BytesFree %d, want %d (or %d) and %d", st.BytesUsed, st.BytesFree, used, used-128, u6Seg-used)
	}
	if st.Fences != 11 || st.Syncs != 0 {
		t.Errorf("cache-flush path Stats: Fences %d Syncs %d, want one fence per call and no msync", st.Fences, st.Syncs)
	}
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	defer l.Close()
	usedBefore := st.BytesUsed
	st = l.Stats()
	if st.BytesUsed != usedBefore || st.Recovery.Records != 12 || st.Recovery.Segments != 1 {
		t.Errorf("reopened Stats: BytesUsed %d Recovery %+v", st.BytesUsed, st.Recovery)
	}
}

// Concurrent truncations of the same end: the strongest wins whatever the
// order, since a TruncateFront at or below FirstIndex (a TruncateBack at or
// past LastIndex) changes nothing.
func TestU6ConcurrentTruncationsCommute(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	for i := range 400 {
		u6Append(t, l, u6Payload(uint64(i+1), 0, 2000))
	}
	var wg sync.WaitGroup
	for _, idx := range []uint64{50, 300, 10, 200, 120, 299, 1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.TruncateFront(idx); err != nil {
				t.Errorf("TruncateFront(%d): %v", idx, err)
			}
		}()
	}
	wg.Wait()
	if l.FirstIndex() != 300 {
		t.Fatalf("after concurrent TruncateFront up to 300: FirstIndex %d", l.FirstIndex())
	}
	for _, idx := range []uint64{390, 350, 399, 320, 400, 1000} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.TruncateBack(idx); err != nil {
				t.Errorf("TruncateBack(%d): %v", idx, err)
			}
		}()
	}
	wg.Wait()
	if l.LastIndex() != 320 {
		t.Fatalf("after concurrent TruncateBack down to 320: LastIndex %d", l.LastIndex())
	}
	m := &u6Model{first: 300}
	for i := uint64(300); i <= 320; i++ {
		m.recs = append(m.recs, u6Payload(i, 0, 2000))
	}
	u6Check(t, "after concurrent truncations", l, m)
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	u6Check(t, "after concurrent truncations, reopened", l, m)
	u6Close(t, l)
}

func TestU6ConcurrentClose(t *testing.T) {
	u6Env(t)
	l := u6Open(t, u6Dir(t), u6Opts())
	u6Append(t, l, []byte("x"))
	var wg sync.WaitGroup
	var nils, closed atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := l.Close(); {
			case err == nil:
				nils.Add(1)
			case errors.Is(err, wal.ErrClosed):
				closed.Add(1)
			default:
				t.Errorf("Close: %v", err)
			}
		}()
	}
	wg.Wait()
	if nils.Load() != 1 || closed.Load() != 3 {
		t.Errorf("4 concurrent Closes: %d nil, %d ErrClosed; want 1 and 3", nils.Load(), closed.Load())
	}
}

// A torn last record: Open drops it, reports it through Recovery and the
// Logger, and a read-only Open beforehand reports the same without changing
// the file.
func TestU6TornTailReported(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	m := &u6Model{first: 1}
	for i := range 5 {
		p := u6Payload(uint64(i+1), 0, 100)
		u6Append(t, l, p)
		m.recs = append(m.recs, p)
	}
	u6Close(t, l)
	seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
	recOff := int64(128 + 4*(32+104))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[recOff+32+50] ^= 1 // a word of record 5's payload never made it
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	m.recs = m.recs[:4]

	ro := u6Open(t, dir, &wal.Options{ReadOnly: true})
	u6Check(t, "read-only view of a torn tail", ro, m)
	roRep := ro.Recovery()
	u6Close(t, ro)
	after, err := os.ReadFile(seg)
	if err != nil || !bytes.Equal(after, data) {
		t.Fatalf("read-only Open changed the segment file")
	}

	var logged bytes.Buffer
	o := u6Opts()
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	l = u6Open(t, dir, o)
	u6Check(t, "torn tail dropped", l, m)
	rep := l.Recovery()
	if !rep.TornTail || rep.Repaired || rep.Records != 4 || rep.DroppedBytes == 0 || len(rep.Dropped) == 0 {
		t.Errorf("Recovery after a torn tail: %+v", rep)
	} else if d := rep.Dropped[0]; d.File != seg || d.Offset != recOff {
		t.Errorf("Recovery.Dropped[0] = %+v, want %s from offset %d", d, seg, recOff)
	}
	if roRep.TornTail != rep.TornTail || roRep.DroppedBytes != rep.DroppedBytes || len(roRep.Dropped) != len(rep.Dropped) {
		t.Errorf("read-only Recovery %+v differs from the writer's %+v", roRep, rep)
	}
	if logged.Len() == 0 {
		t.Errorf("Logger received nothing about the dropped tail")
	}
	if idx := u6Append(t, l, []byte("new 5")); idx != 5 {
		t.Errorf("Append after the torn tail = %d, want 5", idx)
	}
	m.recs = append(m.recs, []byte("new 5"))
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	u6Check(t, "after the torn tail, appended and reopened", l, m)
	if r := l.Recovery(); r.TornTail || len(r.Dropped) != 0 {
		t.Errorf("second reopen dropped again: %+v", r)
	}
	u6Close(t, l)
}

// RecycleSegments: emptied segment files are kept (Stats.FreeSegments) and
// reused (Stats.Recycled); a reopen keeps up to n of the current size.
func TestU6RecycleStats(t *testing.T) {
	u6Env(t)
	o := u6Opts()
	o.RecycleSegments = 2
	s := u6Start(t, o)
	dir, m := s.dir, s.m
	add := func(n int) { s.add(n, 100<<10) }
	add(50) // about 5 segments
	if st := s.l.Stats(); st.Segments < 5 || st.FreeSegments != 0 || st.Recycled != 0 {
		t.Fatalf("before truncation: %+v", st)
	}
	if err := s.l.TruncateFront(45); err != nil {
		t.Fatal(err)
	}
	m.recs, m.first = m.recs[44:], 45
	// The segment being prepared in the background may take one of them
	// (as designed); the rest are kept.
	if st := s.l.Stats(); st.FreeSegments < 1 || st.FreeSegments > 2 {
		t.Errorf("after TruncateFront emptied 4 segments with RecycleSegments 2: FreeSegments %d, want 2 (or 1)", st.FreeSegments)
	}
	u6Close(t, s.l)
	onDisk, _ := filepath.Glob(filepath.Join(dir, "*.free"))
	if len(onDisk) < 1 || len(onDisk) > 2 {
		t.Errorf("after Close: %d free files, want 1 or 2", len(onDisk))
	}
	s.l = u6Open(t, dir, o)
	if st := s.l.Stats(); st.FreeSegments > len(onDisk) {
		t.Errorf("reopened: FreeSegments %d, more than the %d free files", st.FreeSegments, len(onDisk))
	}
	add(30)
	if st := s.l.Stats(); st.Recycled == 0 {
		t.Errorf("3 new segments with 2 free files: Recycled %d", st.Recycled)
	}
	u6Check(t, "recycled", s.l, m)
	u6Close(t, s.l)
	o0 := u6Opts()
	s.l = u6Open(t, dir, o0)
	u6Check(t, "recycled, reopened without recycling", s.l, m)
	if st := s.l.Stats(); st.FreeSegments != 0 {
		t.Errorf("reopened with RecycleSegments 0: FreeSegments %d", st.FreeSegments)
	}
	u6Close(t, s.l)
}

// TruncateFront into the middle of a batch keeps the rest of the batch,
// also across a reopen.
func TestU6TruncateFrontInsideBatch(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	var b [][]byte
	for i := range 6 {
		b = append(b, u6Payload(uint64(i+1), 1, 10))
	}
	if _, err := l.AppendBatch(b); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateFront(4); err != nil {
		t.Fatal(err)
	}
	m := &u6Model{first: 4, recs: b[3:]}
	u6Check(t, "TruncateFront inside a batch", l, m)
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	u6Check(t, "TruncateFront inside a batch, reopened", l, m)
	if err := l.TruncateBack(4); err != nil {
		t.Fatal(err)
	}
	m.recs = m.recs[:1]
	u6Close(t, l)
	l = u6Open(t, dir, u6Opts())
	u6Check(t, "then TruncateBack inside it, reopened", l, m)
	u6Close(t, l)
}

// A random sequence of every operation, checked against a model after each
// and across reopens (writer and read-only).
func TestU6RandomOperations(t *testing.T) {
	u6Env(t)
	for _, p := range []wal.Persist{wal.PersistCacheFlush, wal.PersistMsync} {
		t.Run(p.String(), func(t *testing.T) { u6RandomOperations(t, p) })
	}
}

func u6RandomOperations(t *testing.T, persist wal.Persist) {
	dir := u6Dir(t)
	o := u6Opts()
	o.Persist = persist
	o.RecycleSegments = 1
	l := u6Open(t, dir, o)
	m := &u6Model{first: 1}
	rng := rand.New(rand.NewPCG(6, 6))
	gen := byte(0)
	for step := range 250 {
		what := ""
		switch op := rng.IntN(20); {
		case op < 8:
			p := u6Payload(m.last()+1, gen, rng.IntN(40<<10))
			idx, err := l.Append(p)
			if err != nil || idx != m.last()+1 {
				t.Fatalf("step %d: Append = %d, %v; want %d", step, idx, err, m.last()+1)
			}
			m.recs = append(m.recs, p)
			what = "Append"
		case op < 12:
			var b [][]byte
			for j := range rng.IntN(8) {
				b = append(b, u6Payload(m.last()+1+uint64(j), gen, rng.IntN(8<<10)))
			}
			first, err := l.AppendBatch(b)
			if err != nil || first != m.last()+1 {
				t.Fatalf("step %d: AppendBatch(%d) = %d, %v; want %d", step, len(b), first, err, m.last()+1)
			}
			m.recs = append(m.recs, b...)
			what = fmt.Sprintf("AppendBatch(%d)", len(b))
		case op < 14:
			idx := m.first + uint64(rng.IntN(len(m.recs)+3))
			if rng.IntN(8) == 0 {
				idx = m.last() + 1 + uint64(rng.IntN(100))
			}
			if err := l.TruncateFront(idx); err != nil {
				t.Fatalf("step %d: TruncateFront(%d): %v", step, idx, err)
			}
			if idx > m.last()+1 {
				m.first, m.recs = idx, nil
			} else if idx > m.first {
				m.recs, m.first = m.recs[idx-m.first:], idx
			}
			what = fmt.Sprint("TruncateFront ", idx)
		case op < 16:
			idx := m.first - 1 + uint64(rng.IntN(len(m.recs)+2))
			if err := l.TruncateBack(idx); err != nil {
				t.Fatalf("step %d: TruncateBack(%d): %v", step, idx, err)
			}
			if idx < m.last() {
				m.recs = m.recs[:idx+1-m.first]
			}
			gen++
			what = fmt.Sprint("TruncateBack ", idx)
		case op < 18:
			u6Close(t, l)
			l = u6Open(t, dir, o)
			what = "reopen"
		default:
			u6Close(t, l)
			ro := u6Open(t, dir, &wal.Options{ReadOnly: true})
			u6Check(t, fmt.Sprintf("step %d: read-only", step), ro, m)
			u6Close(t, ro)
			l = u6Open(t, dir, o)
			what = "read-only open"
		}
		u6Check(t, fmt.Sprintf("step %d (%s)", step, what), l, m)
	}
	u6Close(t, l)
}

// FAULT. Persist's contract: "PersistDAX when the segments are mapped with
// MAP_SYNC, otherwise PersistCacheFlush or PersistMsync", and PersistDAX
// "requires MAP_SYNC" (a writer gets ErrNotDAX where it is refused). A
// read-only Open maps every segment MAP_PRIVATE (copy-on-write), never
// MAP_SYNC, yet with Options.Persist = PersistDAX it succeeds on a file
// system without DAX and reports Persist() == PersistDAX (and
// PersistCacheFlush when asked for that): Persist() echoes the request
// instead of saying what is in effect. An inspection tool that prints
// ro.Persist() tells the operator "dax" where a writer's Open fails with
// ErrNotDAX.
func TestU6ReadOnlyPersistReportsWhatIsInEffect(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	w := u6Open(t, dir, u6Opts())
	u6Append(t, w, []byte("x"))
	u6Close(t, w)
	if l, err := wal.Open(dir, &wal.Options{Persist: wal.PersistDAX}); err == nil {
		l.Close()
		t.Skip("MAP_SYNC works here: this test needs a file system without DAX")
	} else if !errors.Is(err, wal.ErrNotDAX) {
		t.Fatalf("writer Open with PersistDAX on a non-DAX file system = %v, want ErrNotDAX", err)
	}
	ro, err := wal.Open(dir, &wal.Options{ReadOnly: true, Persist: wal.PersistDAX})
	if err != nil {
		if !errors.Is(err, wal.ErrNotDAX) {
			t.Fatalf("read-only Open with PersistDAX = %v; want success or ErrNotDAX", err)
		}
		return // refusing, as a writer would, is consistent too
	}
	defer ro.Close()
	if got := ro.Persist(); got == wal.PersistDAX {
		t.Errorf("read-only log on a non-DAX file system reports Persist() = %v, though nothing is mapped with MAP_SYNC (a writer here gets ErrNotDAX)", got)
	}
	if got := ro.Stats().Persist; got == wal.PersistDAX {
		t.Errorf("read-only Stats().Persist = %v on a non-DAX file system", got)
	}
}

// A record damaged while the log is open: Read, Records and Tail report
// ErrCorrupt naming the file and offset; the neighbours still read.
func TestU6DamageWhileOpen(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	l := u6Open(t, dir, u6Opts())
	defer l.Close()
	for i := range 3 {
		u6Append(t, l, u6Payload(uint64(i+1), 0, 64))
	}
	seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
	off := int64(128 + 32 + 64) // record 2
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xee}, off+32+20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctxt := fmt.Sprintf("%s offset %d", seg, off)
	_, err = l.Read(2)
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), ctxt) {
		t.Errorf("Read of a damaged record = %v, want ErrCorrupt naming %q", err, ctxt)
	}
	for _, idx := range []uint64{1, 3} {
		if _, err := l.Read(idx); err != nil {
			t.Errorf("Read(%d) beside the damage: %v", idx, err)
		}
	}
	it := l.Records(1)
	var seen []uint64
	for idx := range it.All() {
		seen = append(seen, idx)
	}
	if len(seen) != 1 || !errors.Is(it.Err(), wal.ErrCorrupt) {
		t.Errorf("Records over the damage yielded %v, Err %v; want [1] and ErrCorrupt", seen, it.Err())
	}
	if _, _, err := l.Tail(2).Next(context.Background(), nil); !errors.Is(err, wal.ErrCorrupt) {
		t.Errorf("Tail(2).Next of a damaged record = %v, want ErrCorrupt", err)
	}
}

// Append's promise: when it returns, the record and every one before it is
// durable, so LastIndex is at least its index and Read finds it, whatever
// the other appenders do; on both persistence paths.
func TestU6AppendReturnsDurable(t *testing.T) {
	u6Env(t)
	for _, p := range []wal.Persist{wal.PersistCacheFlush, wal.PersistMsync} {
		t.Run(p.String(), func(t *testing.T) {
			l := u6Open(t, u6Dir(t), &wal.Options{SegmentSize: u6Seg, Persist: p})
			defer l.Close()
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 300 {
						p := []byte(fmt.Sprintf("g%d-%d-%s", g, i, strings.Repeat("x", i)))
						var idx uint64
						var err error
						if i%5 == 0 {
							idx, err = l.AppendBatch([][]byte{p, p})
							idx++
						} else {
							idx, err = l.Append(p)
						}
						if err != nil {
							t.Errorf("Append: %v", err)
							return
						}
						if last := l.LastIndex(); last < idx {
							t.Errorf("Append returned %d but LastIndex is %d", idx, last)
							return
						}
						if got, err := l.Read(idx); err != nil || !bytes.Equal(got, p) {
							t.Errorf("Read(%d) right after Append = %q, %v", idx, got, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if st := l.Stats(); st.LastIndex != 4*(300+60) || st.Records != st.LastIndex {
				t.Errorf("Stats after 4 appenders: LastIndex %d Records %d, want %d", st.LastIndex, st.Records, 4*360)
			}
		})
	}
}

// Truncations exactly at segment boundaries (records of 100 KiB: ten to a
// 1 MiB segment), with a reopen after each.
func TestU6TruncateAtSegmentBoundaries(t *testing.T) {
	u6Env(t)
	for _, recycle := range []int{0, 2} {
		t.Run(fmt.Sprint("recycle", recycle), func(t *testing.T) {
			o := u6Opts()
			o.RecycleSegments = recycle
			s := u6Start(t, o)
			m, step := s.m, s.reopen
			add := func(n int) { s.add(n, 100<<10-32) }
			add(30)
			if st := s.l.Stats(); st.Segments != 3 {
				t.Fatalf("30 records of 100 KiB: %d segments, want 3", st.Segments)
			}
			if err := s.l.TruncateBack(20); err != nil { // the last segment emptied
				t.Fatal(err)
			}
			m.recs = m.recs[:20]
			step("TruncateBack to the end of segment 2")
			if err := s.l.TruncateBack(10); err != nil {
				t.Fatal(err)
			}
			m.recs = m.recs[:10]
			step("TruncateBack to the end of segment 1")
			add(15)
			step("appends after the cut")
			if err := s.l.TruncateFront(11); err != nil { // segment 1 exactly
				t.Fatal(err)
			}
			m.first, m.recs = 11, m.recs[10:]
			step("TruncateFront to the start of segment 2")
			if err := s.l.TruncateFront(21); err != nil {
				t.Fatal(err)
			}
			m.first, m.recs = 21, m.recs[10:]
			step("TruncateFront to the start of segment 3")
			if err := s.l.TruncateBack(20); err != nil { // FirstIndex-1 at a boundary
				t.Fatal(err)
			}
			m.recs = nil
			step("TruncateBack(FirstIndex-1) at a segment start")
			add(12)
			step("appends after emptying")
			if err := s.l.TruncateFront(m.last() + 1); err != nil {
				t.Fatal(err)
			}
			m.first, m.recs = m.last()+1, nil
			step("TruncateFront(LastIndex+1) after a rollover")
			add(1)
			step("one more")
			u6Close(t, s.l)
		})
	}
}

// FAULT (minor). Close: "Later calls return ErrClosed." A Records iterator
// on a closed log reports ErrClosed only if it has a record left to read:
// one positioned at LastIndex()+1 (a consumer that has caught up, and
// re-creates its iterator from its position to look for more) yields
// nothing and Err() is nil, on an empty closed log too. Such a consumer
// loops for ever on a closed log instead of learning that it is closed;
// Records(1) on the same closed log, and a Tailer at the same position,
// do say ErrClosed.
func TestU6RecordsAtEndAfterClose(t *testing.T) {
	u6Env(t)
	l := u6Open(t, u6Dir(t), u6Opts())
	u6Append(t, l, []byte("a"))
	u6Close(t, l)
	for _, from := range []uint64{1, 2} {
		it := l.Records(from)
		n := 0
		for range it.All() {
			n++
		}
		if n != 0 || !errors.Is(it.Err(), wal.ErrClosed) {
			t.Errorf("Records(%d) on a closed log 1..1: %d records, Err() = %v; want none and ErrClosed", from, n, it.Err())
		}
	}
	if _, _, err := l.Tail(2).Next(context.Background(), nil); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("Tail(2).Next on a closed log = %v, want ErrClosed", err)
	}
}

// Free files are kept only at the current segment size: a reopen with
// another SegmentSize removes them (a read-only Open leaves them).
func TestU6RecycleFreeFilesOfOtherSize(t *testing.T) {
	u6Env(t)
	dir := u6Dir(t)
	o := &wal.Options{SegmentSize: 2 * u6Seg, Persist: wal.PersistCacheFlush, RecycleSegments: 3}
	l := u6Open(t, dir, o)
	for i := range 60 {
		u6Append(t, l, u6Payload(uint64(i+1), 0, 100<<10))
	}
	if err := l.TruncateFront(60); err != nil {
		t.Fatal(err)
	}
	u6Close(t, l)
	frees := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "*.free"))
		return len(m)
	}
	n := frees() // 2, or 1 if the segment prepared in the background took one
	if n < 1 || n > 2 {
		t.Fatalf("after TruncateFront emptied 2 segments with RecycleSegments 3: %d free files", n)
	}
	ro := u6Open(t, dir, &wal.Options{ReadOnly: true, SegmentSize: u6Seg, RecycleSegments: 3})
	u6Close(t, ro)
	if got := frees(); got != n {
		t.Errorf("a read-only Open changed the free files: %d left, want %d", got, n)
	}
	o1 := &wal.Options{SegmentSize: u6Seg, Persist: wal.PersistCacheFlush, RecycleSegments: 3}
	l = u6Open(t, dir, o1)
	if n := l.Stats().FreeSegments; n != 0 {
		t.Errorf("reopened with another SegmentSize: FreeSegments %d, want 0", n)
	}
	if n := frees(); n != 0 {
		t.Errorf("reopened with another SegmentSize: %d free files left, want 0", n)
	}
	m := &u6Model{first: 60, recs: [][]byte{u6Payload(60, 0, 100<<10)}}
	u6Check(t, "after a size change", l, m)
	u6Close(t, l)
}
