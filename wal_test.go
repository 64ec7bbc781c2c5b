package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// apiSeg is the segment size used almost everywhere: the minimum, 1 MiB.
const apiSeg = 1 << 20

// apiMaxPayload is the largest single record payload that fits in a segment
// of size s: the segment header (128) and one record header (32) are taken.
func apiMaxPayload(s int) int { return s - segHeaderSize - recHeaderSize }

// apiNoEnv makes the persistence mode depend on Options alone.
func apiNoEnv(t *testing.T) {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
}

// apiShmDir returns a fresh directory on tmpfs, removed after the test.
func apiShmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-api-")
	if err != nil {
		t.Fatalf("MkdirTemp /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// apiOpen opens a log and closes it at the end of the test (a log already
// closed by the test is fine).
func apiOpen(t *testing.T, dir string, opts *Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close at cleanup: %v", err)
		}
	})
	return l
}

func apiClose(t *testing.T, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// apiPayload returns n deterministic bytes that depend on seed.
func apiPayload(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func apiAppend(t *testing.T, l *Log, data []byte) uint64 {
	t.Helper()
	idx, err := l.Append(data)
	if err != nil {
		t.Fatalf("Append(%d bytes): %v", len(data), err)
	}
	return idx
}

func apiBatch(t *testing.T, l *Log, recs [][]byte) uint64 {
	t.Helper()
	idx, err := l.AppendBatch(recs)
	if err != nil {
		t.Fatalf("AppendBatch(%d records): %v", len(recs), err)
	}
	return idx
}

// apiCheckAll asserts that the log holds exactly want, at indexes 1..len(want).
func apiCheckAll(t *testing.T, l *Log, want [][]byte) {
	t.Helper()
	if got := l.FirstIndex(); got != 1 {
		t.Fatalf("FirstIndex = %d, want 1", got)
	}
	if got := l.LastIndex(); got != uint64(len(want)) {
		t.Fatalf("LastIndex = %d, want %d", got, len(want))
	}
	for i, w := range want {
		got, err := l.Read(uint64(i + 1))
		if err != nil {
			t.Fatalf("Read(%d): %v", i+1, err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("Read(%d): got %d bytes, want %d bytes (same length: %v, contents differ)", i+1, len(got), len(w), len(got) == len(w))
		}
	}
	if _, err := l.Read(uint64(len(want) + 1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read(LastIndex+1) = %v, want ErrNotFound", err)
	}
}

// apiSegFiles lists the segment files in dir.
func apiSegFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// apiSegOf returns the sequence number of the segment holding index.
func apiSegOf(l *Log, index uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segFor(index).seq
}

func apiActiveSegs(l *Log) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.segs)
}

func TestApiNewLogIndexes(t *testing.T) {
	apiNoEnv(t)
	dir := t.TempDir()
	opts := &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}
	l := apiOpen(t, dir, opts)
	if got := l.FirstIndex(); got != 1 {
		t.Errorf("new log: FirstIndex = %d, want 1", got)
	}
	if got := l.LastIndex(); got != 0 {
		t.Errorf("new log: LastIndex = %d, want 0", got)
	}
	if _, err := l.Read(1); !errors.Is(err, ErrNotFound) {
		t.Errorf("new log: Read(1) = %v, want ErrNotFound", err)
	}
	if idx, err := l.AppendBatch(nil); err != nil || idx != 1 {
		t.Errorf("new log: AppendBatch(nil) = %d, %v; want 1, nil", idx, err)
	}
	r := l.Recovery()
	if r.Records != 0 || r.TornTail || r.Repaired || r.DroppedRecords != 0 || len(r.DroppedFiles) != 0 {
		t.Errorf("new log: Recovery() = %+v, want a clean empty report", r)
	}
	apiClose(t, l)

	// An empty log reopens empty.
	l = apiOpen(t, dir, opts)
	if f, la := l.FirstIndex(), l.LastIndex(); f != 1 || la != 0 {
		t.Errorf("reopened empty log: FirstIndex, LastIndex = %d, %d; want 1, 0", f, la)
	}
	if got := apiAppend(t, l, []byte("first")); got != 1 {
		t.Errorf("first Append after reopening an empty log = %d, want 1", got)
	}
	apiCheckAll(t, l, [][]byte{[]byte("first")})
}

func TestApiRoundTripSizes(t *testing.T) {
	apiNoEnv(t)
	for _, mode := range []Persist{PersistCacheFlush, PersistMsync} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := apiShmDir(t)
			opts := &Options{SegmentSize: apiSeg, Persist: mode}
			l := apiOpen(t, dir, opts)
			if l.FirstIndex() != 1 || l.LastIndex() != 0 {
				t.Fatalf("new log: FirstIndex, LastIndex = %d, %d; want 1, 0", l.FirstIndex(), l.LastIndex())
			}
			sizes := []int{0, 1, 7, 8, 63, 64, 65, 4095, 4096, apiMaxPayload(apiSeg)}
			var want [][]byte
			for i, n := range sizes {
				data := apiPayload(uint64(i), n)
				orig := bytes.Clone(data)
				idx := apiAppend(t, l, data)
				if idx != uint64(i+1) {
					t.Fatalf("Append #%d (%d bytes) = index %d, want %d", i, n, idx, i+1)
				}
				if l.LastIndex() != idx {
					t.Fatalf("after Append: LastIndex = %d, want %d", l.LastIndex(), idx)
				}
				// The log keeps its own copy: changing the caller's slice later changes nothing.
				for j := range data {
					data[j] ^= 0xA5
				}
				want = append(want, orig)
			}
			for i, w := range want {
				got, err := l.Read(uint64(i + 1))
				if err != nil {
					t.Fatalf("Read(%d): %v", i+1, err)
				}
				if len(got) != len(w) || !bytes.Equal(got, w) {
					t.Fatalf("Read(%d): %d bytes, not the %d appended", i+1, len(got), len(w))
				}
				if len(got) > 0 {
					// Read returns a copy: changing it does not change a later Read.
					for j := range got {
						got[j] ^= 0xFF
					}
					again, err := l.Read(uint64(i + 1))
					if err != nil || !bytes.Equal(again, w) {
						t.Fatalf("Read(%d) after mutating the previous result: err %v, equal %v", i+1, err, bytes.Equal(again, w))
					}
				}
			}

			// One byte more than the largest record: ErrTooLarge, nothing changes.
			last := l.LastIndex()
			if _, err := l.Append(make([]byte, apiMaxPayload(apiSeg)+1)); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Append(max+1 bytes) = %v, want ErrTooLarge", err)
			}
			if _, err := l.Append(make([]byte, 2*apiSeg)); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Append(2 segments) = %v, want ErrTooLarge", err)
			}
			if l.LastIndex() != last {
				t.Fatalf("LastIndex after ErrTooLarge = %d, want %d", l.LastIndex(), last)
			}
			next := apiPayload(99, 100)
			if idx := apiAppend(t, l, next); idx != last+1 {
				t.Fatalf("Append after ErrTooLarge = index %d, want %d", idx, last+1)
			}
			want = append(want, next)
			apiCheckAll(t, l, want)

			apiClose(t, l)
			l = apiOpen(t, dir, opts)
			apiCheckAll(t, l, want)
			if idx := apiAppend(t, l, []byte("after reopen")); idx != uint64(len(want)+1) {
				t.Fatalf("Append after reopen = %d, want %d", idx, len(want)+1)
			}
		})
	}
}

func TestApiRolloverReopen(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	opts := &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}
	l := apiOpen(t, dir, opts)
	var want [][]byte
	total := 0
	for i := 0; total < 7<<20; i++ {
		n := (i * 7919) % 40000
		if i%50 == 0 {
			n = apiMaxPayload(apiSeg) / 3 // some large records too
		}
		data := apiPayload(uint64(i), n)
		if idx := apiAppend(t, l, data); idx != uint64(i+1) {
			t.Fatalf("Append #%d = %d, want %d", i, idx, i+1)
		}
		want = append(want, data)
		total += n
	}
	segs := apiActiveSegs(l)
	if segs < 7 {
		t.Fatalf("%d bytes of records use %d segments, want at least 7", total, segs)
	}
	apiCheckAll(t, l, want)
	apiClose(t, l)

	files := apiSegFiles(t, dir)
	if len(files) < segs {
		t.Fatalf("%d segment files on disk, want at least %d", len(files), segs)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != apiSeg {
			t.Errorf("%s: size %d, want %d", f, st.Size(), apiSeg)
		}
	}

	l = apiOpen(t, dir, opts)
	apiCheckAll(t, l, want)
	r := l.Recovery()
	if r.Records != uint64(len(want)) || r.Segments != segs || r.TornTail || r.Repaired || r.DroppedRecords != 0 || r.DroppedBytes != 0 || len(r.DroppedFiles) != 0 {
		t.Errorf("Recovery() after a clean close = %+v, want Records %d, Segments %d and nothing dropped", r, len(want), segs)
	}
	// Appends continue at the right index, into further segments.
	for i := 0; i < 60; i++ {
		data := apiPayload(uint64(1000+i), 30000)
		if idx := apiAppend(t, l, data); idx != uint64(len(want)+1) {
			t.Fatalf("Append after reopen = %d, want %d", idx, len(want)+1)
		}
		want = append(want, data)
	}
	if apiActiveSegs(l) <= segs {
		t.Fatalf("appends after reopen did not roll over: %d segments", apiActiveSegs(l))
	}
	apiCheckAll(t, l, want)
	apiClose(t, l)
	l = apiOpen(t, dir, opts)
	apiCheckAll(t, l, want)
}

func TestApiBatchRollover(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	opts := &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}
	l := apiOpen(t, dir, opts)
	type span struct{ first, last uint64 }
	var batches []span
	var want [][]byte
	seed := uint64(0)
	for b := 0; len(want) < 1500 || apiActiveSegs(l) < 5; b++ {
		if b%3 == 2 { // single appends between the batches
			seed++
			data := apiPayload(seed, int(seed%5000))
			if idx := apiAppend(t, l, data); idx != uint64(len(want)+1) {
				t.Fatalf("Append = %d, want %d", idx, len(want)+1)
			}
			want = append(want, data)
			continue
		}
		k := 2 + b%17
		var recs [][]byte
		for j := 0; j < k; j++ {
			seed++
			recs = append(recs, apiPayload(seed, int(seed*131%12000)))
		}
		first := apiBatch(t, l, recs)
		if first != uint64(len(want)+1) {
			t.Fatalf("AppendBatch = %d, want %d", first, len(want)+1)
		}
		if l.LastIndex() != first+uint64(k)-1 {
			t.Fatalf("LastIndex after a %d-record batch at %d = %d", k, first, l.LastIndex())
		}
		batches = append(batches, span{first, first + uint64(k) - 1})
		want = append(want, recs...)
	}
	check := func(l *Log) {
		t.Helper()
		crossed := 0
		for _, s := range batches {
			a, b := apiSegOf(l, s.first), apiSegOf(l, s.last)
			if a != b {
				t.Fatalf("batch %d..%d spans segments %d and %d", s.first, s.last, a, b)
			}
			if s.first > 1 && apiSegOf(l, s.first-1) != a {
				crossed++
			}
		}
		if crossed == 0 {
			t.Fatalf("no batch started a new segment; the test did not exercise rollover")
		}
		apiCheckAll(t, l, want)
	}
	check(l)
	apiClose(t, l)
	l = apiOpen(t, dir, opts)
	check(l)
}

// apiAutoWant is what PersistAuto gives in dir: PersistDAX where the
// filesystem takes MAP_SYNC (in test/dax/run's guest every test directory
// does), else PersistMsync (tmpfs and the test disk here).
func apiAutoWant(t *testing.T, dir string) Persist {
	t.Helper()
	if daxProbe(dir) == nil {
		return PersistDAX
	}
	return PersistMsync
}

func TestApiPersistModes(t *testing.T) {
	apiNoEnv(t)
	cases := []struct {
		mode, want Persist
	}{
		{PersistAuto, PersistMsync}, // PersistDAX where the directory is DAX (apiAutoWant)
		{PersistCacheFlush, PersistCacheFlush},
		{PersistMsync, PersistMsync},
	}
	dirs := []struct {
		name string
		make func(*testing.T) string
	}{
		{"shm", apiShmDir},
		{"disk", func(t *testing.T) string { return t.TempDir() }},
	}
	for _, d := range dirs {
		for _, c := range cases {
			t.Run(d.name+"/"+c.mode.String(), func(t *testing.T) {
				dir := d.make(t)
				want := c.want
				if c.mode == PersistAuto {
					want = apiAutoWant(t, dir)
				}
				opts := &Options{SegmentSize: apiSeg, Persist: c.mode}
				l := apiOpen(t, dir, opts)
				if got := l.Persist(); got != want {
					t.Fatalf("Persist() = %v, want %v", got, want)
				}
				var recs [][]byte
				for i := 0; i < 10; i++ {
					data := apiPayload(uint64(i), 100*i)
					apiAppend(t, l, data)
					recs = append(recs, data)
				}
				batch := [][]byte{apiPayload(50, 10), {}, apiPayload(51, 5000), apiPayload(52, 1)}
				if first := apiBatch(t, l, batch); first != 11 {
					t.Fatalf("AppendBatch = %d, want 11", first)
				}
				recs = append(recs, batch...)
				apiCheckAll(t, l, recs)
				apiClose(t, l)

				l = apiOpen(t, dir, opts)
				if got := l.Persist(); got != want {
					t.Fatalf("after reopen: Persist() = %v, want %v", got, want)
				}
				if l.Persist() == PersistAuto {
					t.Fatalf("Persist() returned PersistAuto")
				}
				apiCheckAll(t, l, recs)
				data := []byte("after reopen")
				if idx := apiAppend(t, l, data); idx != uint64(len(recs)+1) {
					t.Fatalf("Append after reopen = %d, want %d", idx, len(recs)+1)
				}
				apiCheckAll(t, l, append(recs, data))
			})
		}
	}
}

func TestApiPersistDAXNotSupported(t *testing.T) {
	apiNoEnv(t)
	dirs := map[string]string{"shm": apiShmDir(t), "disk": t.TempDir()}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			if daxProbe(dir) == nil {
				t.Skipf("%s takes MAP_SYNC (TestDAXPersistAuto opens PersistDAX there)", dir)
			}
			l, err := Open(dir, &Options{SegmentSize: apiSeg, Persist: PersistDAX})
			if err == nil {
				l.Close()
				t.Fatalf("Open with PersistDAX on a non-DAX filesystem succeeded (Persist() = %v)", l.Persist())
			}
			if !errors.Is(err, ErrNotDAX) {
				t.Fatalf("Open with PersistDAX = %v, want ErrNotDAX", err)
			}
			if file := filepath.Join(dir, segName(1)); !strings.Contains(err.Error(), file) {
				t.Errorf("error %q does not name the file %s", err, file)
			}
			// The failed Open released the directory: a usable mode opens it.
			l = apiOpen(t, dir, &Options{SegmentSize: apiSeg, Persist: PersistMsync})
			if l.LastIndex() != 0 || l.FirstIndex() != 1 {
				t.Errorf("after a failed DAX open: FirstIndex, LastIndex = %d, %d; want 1, 0", l.FirstIndex(), l.LastIndex())
			}
			apiAppend(t, l, []byte("x"))
			apiCheckAll(t, l, [][]byte{[]byte("x")})
		})
	}
}

func TestApiPersistEnvOverride(t *testing.T) {
	dir := apiShmDir(t)
	t.Setenv("WAL_PERSIST", "cacheflush")
	l := apiOpen(t, dir, &Options{SegmentSize: apiSeg, Persist: PersistMsync})
	if got := l.Persist(); got != PersistCacheFlush {
		t.Errorf("WAL_PERSIST=cacheflush with Options.Persist=msync: Persist() = %v, want cacheflush", got)
	}
	apiAppend(t, l, []byte("a"))
	apiClose(t, l)

	t.Setenv("WAL_PERSIST", "msync")
	l = apiOpen(t, dir, &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush})
	if got := l.Persist(); got != PersistMsync {
		t.Errorf("WAL_PERSIST=msync with Options.Persist=cacheflush: Persist() = %v, want msync", got)
	}
	apiCheckAll(t, l, [][]byte{[]byte("a")})
	apiClose(t, l)

	t.Setenv("WAL_PERSIST", "bogus")
	if l, err := Open(dir, &Options{SegmentSize: apiSeg}); err == nil {
		l.Close()
		t.Errorf("Open with WAL_PERSIST=bogus succeeded")
	}

	// An empty WAL_PERSIST does not override.
	t.Setenv("WAL_PERSIST", "")
	l = apiOpen(t, dir, &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush})
	if got := l.Persist(); got != PersistCacheFlush {
		t.Errorf("empty WAL_PERSIST: Persist() = %v, want cacheflush", got)
	}
}

func TestApiPersistStringParse(t *testing.T) {
	names := map[Persist]string{
		PersistAuto:       "auto",
		PersistDAX:        "dax",
		PersistCacheFlush: "cacheflush",
		PersistMsync:      "msync",
	}
	for p, name := range names {
		if got := p.String(); got != name {
			t.Errorf("Persist(%d).String() = %q, want %q", int(p), got, name)
		}
		got, err := ParsePersist(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePersist(%q) = %v, %v; want %v, nil", p.String(), got, err, p)
		}
	}
	for _, s := range []string{"bogus", "", "msync ", "Persist(7)"} {
		if p, err := ParsePersist(s); err == nil {
			t.Errorf("ParsePersist(%q) = %v, nil; want an error", s, p)
		}
	}
	if got := Persist(7).String(); got != "Persist(7)" {
		t.Errorf("Persist(7).String() = %q", got)
	}
}

func TestApiAppendBatch(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	opts := &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}
	l := apiOpen(t, dir, opts)
	var want [][]byte

	// An empty batch on a new log returns 1 and writes nothing.
	for _, empty := range [][][]byte{nil, {}} {
		if idx, err := l.AppendBatch(empty); err != nil || idx != 1 {
			t.Fatalf("AppendBatch(empty) on a new log = %d, %v; want 1, nil", idx, err)
		}
	}
	if l.LastIndex() != 0 {
		t.Fatalf("LastIndex after empty batches = %d, want 0", l.LastIndex())
	}

	one := apiPayload(1, 10)
	if idx := apiAppend(t, l, one); idx != 1 {
		t.Fatalf("Append after empty batches = %d, want 1", idx)
	}
	want = append(want, one)

	b1 := [][]byte{apiPayload(2, 0), apiPayload(3, 1), apiPayload(4, 4096), nil, apiPayload(5, 77)}
	if first := apiBatch(t, l, b1); first != 2 {
		t.Fatalf("AppendBatch = %d, want 2 (the index of its first record)", first)
	}
	want = append(want, b1...)
	if l.LastIndex() != 6 {
		t.Fatalf("LastIndex after a 5-record batch = %d, want 6", l.LastIndex())
	}
	// The log copied the batch: changing the caller's slices changes nothing.
	b1[2][0] ^= 0xFF
	want[3] = apiPayload(4, 4096)

	if idx, err := l.AppendBatch(nil); err != nil || idx != 7 {
		t.Fatalf("AppendBatch(nil) = %d, %v; want 7 (the next index), nil", idx, err)
	}
	if l.LastIndex() != 6 {
		t.Fatalf("LastIndex after an empty batch = %d, want 6", l.LastIndex())
	}
	single := [][]byte{apiPayload(6, 300)}
	if first := apiBatch(t, l, single); first != 7 {
		t.Fatalf("single-record AppendBatch = %d, want 7", first)
	}
	want = append(want, single...)

	// Batches that do not fit in one segment: ErrTooLarge, nothing written.
	half := apiMaxPayload(apiSeg) / 2
	tooLarge := [][][]byte{
		{make([]byte, half), make([]byte, half), make([]byte, 100)},
		{make([]byte, 600000), make([]byte, 600000)},
		{[]byte("small"), make([]byte, apiSeg+1)},
		// Headers and padding included, 8 bytes more than a segment holds.
		{make([]byte, 16), make([]byte, apiSeg-segHeaderSize-2*recHeaderSize-8)},
		{make([]byte, 8), make([]byte, apiSeg-segHeaderSize-2*recHeaderSize-8+1)},
	}
	for i, b := range tooLarge {
		if _, err := l.AppendBatch(b); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("too-large batch #%d: err %v, want ErrTooLarge", i, err)
		}
		if l.LastIndex() != 7 {
			t.Fatalf("LastIndex after a refused batch = %d, want 7", l.LastIndex())
		}
	}
	// A batch that fills a whole segment exactly fits.
	exact := [][]byte{apiPayload(7, 8), apiPayload(8, apiSeg-segHeaderSize-2*recHeaderSize-8)}
	if recSize(len(exact[0]))+recSize(len(exact[1])) != apiSeg-segHeaderSize {
		t.Fatalf("test bug: the exact batch takes %d bytes", recSize(len(exact[0]))+recSize(len(exact[1])))
	}
	if first := apiBatch(t, l, exact); first != 8 {
		t.Fatalf("segment-filling AppendBatch = %d, want 8", first)
	}
	want = append(want, exact...)
	if apiSegOf(l, 8) != apiSegOf(l, 9) || apiSegOf(l, 8) == apiSegOf(l, 7) {
		t.Fatalf("segment-filling batch: segments %d, %d (previous record in %d)", apiSegOf(l, 8), apiSegOf(l, 9), apiSegOf(l, 7))
	}
	if idx := apiAppend(t, l, []byte("next")); idx != 10 {
		t.Fatalf("Append after the batches = %d, want 10", idx)
	}
	want = append(want, []byte("next"))
	apiCheckAll(t, l, want)
	apiClose(t, l)
	l = apiOpen(t, dir, opts)
	apiCheckAll(t, l, want)
}

func TestApiReadNotFound(t *testing.T) {
	apiNoEnv(t)
	l := apiOpen(t, apiShmDir(t), &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush})
	for _, idx := range []uint64{0, 1, 2, math.MaxUint64} {
		if _, err := l.Read(idx); !errors.Is(err, ErrNotFound) {
			t.Errorf("empty log: Read(%d) = %v, want ErrNotFound", idx, err)
		}
	}
	for i := 0; i < 5; i++ {
		apiAppend(t, l, apiPayload(uint64(i), 10))
	}
	for _, idx := range []uint64{0, l.LastIndex() + 1, l.LastIndex() + 2, 1 << 40, math.MaxUint64} {
		data, err := l.Read(idx)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Read(%d) with LastIndex %d = %v, want ErrNotFound", idx, l.LastIndex(), err)
		}
		if data != nil {
			t.Errorf("Read(%d) returned %d bytes with its error", idx, len(data))
		}
	}
	for idx := l.FirstIndex(); idx <= l.LastIndex(); idx++ {
		if _, err := l.Read(idx); err != nil {
			t.Errorf("Read(%d) = %v", idx, err)
		}
	}
}

func TestApiClosed(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	opts := &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}
	l := apiOpen(t, dir, opts)
	apiAppend(t, l, []byte("kept"))
	apiClose(t, l)

	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := l.Append(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Append(nil) after Close = %v, want ErrClosed", err)
	}
	if _, err := l.AppendBatch([][]byte{[]byte("a"), []byte("b")}); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendBatch after Close = %v, want ErrClosed", err)
	}
	if _, err := l.AppendBatch(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("empty AppendBatch after Close = %v, want ErrClosed", err)
	}
	// Too large as well: the closed log is the answer, as for any append.
	if _, err := l.Append(make([]byte, 2*apiSeg)); !errors.Is(err, ErrClosed) {
		t.Errorf("oversized Append after Close = %v, want ErrClosed", err)
	}
	if _, err := l.AppendBatch([][]byte{make([]byte, apiSeg/2), make([]byte, apiSeg/2)}); !errors.Is(err, ErrClosed) {
		t.Errorf("oversized AppendBatch after Close = %v, want ErrClosed", err)
	}
	for _, idx := range []uint64{0, 1, 2} {
		if _, err := l.Read(idx); !errors.Is(err, ErrClosed) {
			t.Errorf("Read(%d) after Close = %v, want ErrClosed", idx, err)
		}
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("third Close = %v, want ErrClosed", err)
	}
	// Nothing was written after Close.
	l = apiOpen(t, dir, opts)
	apiCheckAll(t, l, [][]byte{[]byte("kept")})
}

func TestApiInvalidOptions(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	bad := []Options{
		{SegmentSize: apiSeg + 1},
		{SegmentSize: apiSeg + 100},
		{SegmentSize: apiSeg + 2048},
		{SegmentSize: apiSeg - 4096},
		{SegmentSize: 4096},
		{SegmentSize: 1},
		{SegmentSize: -apiSeg},
		{SegmentSize: 1 << 32},
		{SegmentSize: apiSeg, InFlightBound: 100},
		{SegmentSize: apiSeg, Persist: Persist(42)},
		{SegmentSize: apiSeg, Persist: Persist(-1)},
	}
	for _, o := range bad {
		l, err := Open(filepath.Join(dir, "log"), &o)
		if err == nil {
			l.Close()
			t.Errorf("Open with %+v succeeded, want an error", o)
		}
	}
	// Valid edges: exactly 1 MiB and 1 MiB + 4 KiB.
	for _, size := range []int64{apiSeg, apiSeg + 4096} {
		l := apiOpen(t, filepath.Join(dir, "ok"+strconv.FormatInt(size, 10)), &Options{SegmentSize: size, Persist: PersistCacheFlush})
		apiAppend(t, l, []byte("x"))
		apiClose(t, l)
	}
}

func TestApiOptionsNotModified(t *testing.T) {
	apiNoEnv(t)
	cases := []Options{
		{SegmentSize: apiSeg},
		{SegmentSize: apiSeg, Persist: PersistCacheFlush},
		{SegmentSize: apiSeg, Persist: PersistMsync, InFlightBound: 8192, FileMode: 0o640, RepairCorruption: true},
	}
	for i, o := range cases {
		dir := apiShmDir(t)
		before := o
		l := apiOpen(t, dir, &o)
		apiAppend(t, l, []byte("x"))
		apiClose(t, l)
		if o != before {
			t.Errorf("case %d: Open changed the Options: before %+v, after %+v", i, before, o)
		}
	}
	// Not even when the environment overrides a field.
	t.Setenv("WAL_PERSIST", "cacheflush")
	o := Options{SegmentSize: apiSeg, Persist: PersistMsync}
	before := o
	l := apiOpen(t, apiShmDir(t), &o)
	apiClose(t, l)
	if o != before {
		t.Errorf("with WAL_PERSIST: Open changed the Options: before %+v, after %+v", before, o)
	}
}

func TestApiNilOptions(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	l := apiOpen(t, dir, nil)
	if got, want := l.Persist(), apiAutoWant(t, dir); got != want {
		t.Errorf("nil Options: Persist() = %v, want %v (what PersistAuto gives in %s)", got, want, dir)
	}
	want := [][]byte{apiPayload(1, 1000), apiPayload(2, 3<<20)} // 3 MiB fits a 64 MiB segment
	for _, w := range want {
		apiAppend(t, l, w)
	}
	apiCheckAll(t, l, want)
	apiClose(t, l)
	files := apiSegFiles(t, dir)
	if len(files) == 0 {
		t.Fatalf("no segment files in %s", dir)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != 64<<20 {
			t.Errorf("%s: size %d, want the default 64 MiB", f, st.Size())
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	l = apiOpen(t, dir, nil)
	apiCheckAll(t, l, want)
}

// apiUmask reads the process umask without changing it.
func apiUmask(t *testing.T) os.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("cannot read the umask: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Skipf("cannot parse %q", line)
			}
			return os.FileMode(m)
		}
	}
	t.Skip("no Umask line in /proc/self/status")
	return 0
}

func TestApiFileModes(t *testing.T) {
	apiNoEnv(t)
	cases := []struct {
		mode, want os.FileMode
	}{
		{0, 0o600},
		{0o640, 0o640},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%04o", c.want), func(t *testing.T) {
			if um := apiUmask(t); um&c.want != 0 {
				t.Skipf("umask %04o would strip bits of %04o", um, c.want)
			}
			dir := filepath.Join(t.TempDir(), "log")
			opts := &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush, FileMode: c.mode}
			l := apiOpen(t, dir, opts)
			for i := 0; i < 3; i++ { // roll over, so that several segment files exist
				apiAppend(t, l, make([]byte, apiMaxPayload(apiSeg)))
			}
			apiClose(t, l)
			files := append(apiSegFiles(t, dir), filepath.Join(dir, lockName))
			if len(files) < 4 {
				t.Fatalf("files %v: want at least 3 segments and LOCK", files)
			}
			for _, f := range files {
				st, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if got := st.Mode().Perm(); got != c.want {
					t.Errorf("%s: mode %04o, want %04o", filepath.Base(f), got, c.want)
				}
			}
		})
	}
}

func TestApiForeignFilesIgnored(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	foreign := map[string]string{
		"README":                            "notes about this log\n",
		".00000000000000000001.seg.swp":     "vim swap",
		"00000000000000000001.seg.swp":      "swap",
		"00000000000000000001.seg~":         "backup",
		"1.seg":                             "short name",
		"notes.seg":                         "not a number",
		"x.seg.tmp":                         "not a segment preparation",
		"00000000000000000000.seg":          "sequence 0 is not a segment",
		"000000000000000000001.seg":         "21 digits",
		"LOCK.bak":                          "",
		"00000000000000000002.segment-info": "other",
	}
	for name, content := range foreign {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}
	l := apiOpen(t, dir, opts)
	var want [][]byte
	for i := 0; i < 40; i++ { // about 1.6 MiB: one rollover
		data := apiPayload(uint64(i), 40000)
		apiAppend(t, l, data)
		want = append(want, data)
	}
	apiCheckAll(t, l, want)
	apiClose(t, l)
	l = apiOpen(t, dir, opts)
	apiCheckAll(t, l, want)
	if r := l.Recovery(); r.TornTail || r.Repaired || len(r.DroppedFiles) != 0 {
		t.Errorf("Recovery() with foreign files = %+v, want nothing dropped", r)
	}
	apiClose(t, l)
	for name, content := range foreign {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("foreign file %s: %v", name, err)
			continue
		}
		if string(got) != content {
			t.Errorf("foreign file %s changed: %q, want %q", name, got, content)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "subdir")); err != nil || !st.IsDir() {
		t.Errorf("foreign directory: %v", err)
	}
}

// apiRec is a self-describing concurrent-test payload: writer id, sequence
// number and length, then bytes derived from them.
func apiRec(g, seq int) []byte {
	n := 12 + (seq*37+g*101)%1500
	b := apiPayload(uint64(g)<<32|uint64(seq), n)
	binary.LittleEndian.PutUint32(b[0:], uint32(g))
	binary.LittleEndian.PutUint32(b[4:], uint32(seq))
	binary.LittleEndian.PutUint32(b[8:], uint32(n))
	return b
}

// apiRecCheck decodes and verifies an apiRec payload.
func apiRecCheck(b []byte) (g, seq int, err error) {
	if len(b) < 12 {
		return 0, 0, fmt.Errorf("%d-byte record", len(b))
	}
	g = int(binary.LittleEndian.Uint32(b[0:]))
	seq = int(binary.LittleEndian.Uint32(b[4:]))
	if g > 1<<16 || seq > 1<<24 || !bytes.Equal(b, apiRec(g, seq)) {
		return g, seq, fmt.Errorf("record (writer %d, seq %d, %d bytes) does not match its contents", g, seq, len(b))
	}
	return g, seq, nil
}

type apiKey struct{ g, seq int }

// apiConcurrent runs writers goroutines doing ops operations each (a mix of
// Append and small AppendBatch) and two readers, and checks every record.
func apiConcurrent(t *testing.T, dir string, opts *Options, writers, ops, minSegs int, withReaders bool) {
	l := apiOpen(t, dir, opts)
	var rounds, calls atomic.Int64 // group commits (msync mode) and append calls
	if l.Persist() == PersistMsync {
		apiSetHook(l, func() error { rounds.Add(1); return nil })
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		owner   = map[uint64]apiKey{} // index -> record
		done    atomic.Bool
		reads   atomic.Int64
		readErr atomic.Value
	)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := 0
			prev := uint64(0)
			local := map[uint64]apiKey{}
			for op := 0; op < ops; op++ {
				k := 1
				if (op+g)%3 == 0 {
					k = 1 + (op+g)%4
				}
				recs := make([][]byte, k)
				for j := range recs {
					recs[j] = apiRec(g, seq+j)
				}
				var first uint64
				var err error
				if k == 1 && op%2 == 0 {
					first, err = l.Append(recs[0])
				} else {
					first, err = l.AppendBatch(recs)
				}
				calls.Add(1)
				if err != nil {
					t.Errorf("writer %d op %d: %v", g, op, err)
					return
				}
				if first <= prev {
					t.Errorf("writer %d: index %d after its earlier index %d", g, first, prev)
					return
				}
				if li := l.LastIndex(); li < first+uint64(k)-1 {
					t.Errorf("writer %d: LastIndex %d below the acknowledged index %d", g, li, first+uint64(k)-1)
					return
				}
				for j := 0; j < k; j++ {
					local[first+uint64(j)] = apiKey{g, seq + j}
				}
				prev = first + uint64(k) - 1
				seq += k
			}
			mu.Lock()
			defer mu.Unlock()
			for idx, key := range local {
				if o, dup := owner[idx]; dup {
					t.Errorf("index %d returned to writer %d (seq %d) and writer %d (seq %d)", idx, key.g, key.seq, o.g, o.seq)
				}
				owner[idx] = key
			}
		}()
	}
	var rwg sync.WaitGroup
	if withReaders {
		for r := 0; r < 2; r++ {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				x := uint64(r + 1)
				for last := false; !last; {
					last = done.Load()
					li := l.LastIndex()
					if li == 0 {
						continue
					}
					for i := 0; i < 50; i++ {
						x = x*6364136223846793005 + 1442695040888963407
						idx := 1 + (x>>33)%li
						b, err := l.Read(idx)
						if err == nil {
							_, _, err = apiRecCheck(b)
						}
						if err != nil {
							readErr.CompareAndSwap(nil, fmt.Errorf("Read(%d) with LastIndex %d: %w", idx, li, err))
							return
						}
						reads.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	done.Store(true)
	rwg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if err, _ := readErr.Load().(error); err != nil {
		t.Fatalf("concurrent reader: %v", err)
	}
	if withReaders && reads.Load() == 0 {
		t.Fatalf("readers read nothing")
	}
	n := uint64(len(owner))
	if n == 0 {
		t.Fatalf("no records")
	}
	if segs := apiActiveSegs(l); segs < minSegs {
		t.Fatalf("%d records in %d segments, want at least %d: rollover not exercised", n, segs, minSegs)
	}
	// Each group commit makes at least one waiting append durable.
	if r := rounds.Load(); l.Persist() == PersistMsync && (r < 1 || r > calls.Load()) {
		t.Fatalf("%d group commits for %d appends", r, calls.Load())
	}
	apiSetHook(l, nil)
	check := func(l *Log) {
		t.Helper()
		if l.FirstIndex() != 1 || l.LastIndex() != n {
			t.Fatalf("FirstIndex, LastIndex = %d, %d; want 1, %d", l.FirstIndex(), l.LastIndex(), n)
		}
		perWriter := map[int][]int{}
		for idx := uint64(1); idx <= n; idx++ {
			key, ok := owner[idx]
			if !ok {
				t.Fatalf("index %d was never returned to a writer (indexes are not exactly 1..%d)", idx, n)
			}
			b, err := l.Read(idx)
			if err != nil {
				t.Fatalf("Read(%d): %v", idx, err)
			}
			g, seq, err := apiRecCheck(b)
			if err != nil {
				t.Fatalf("Read(%d): %v", idx, err)
			}
			if g != key.g || seq != key.seq {
				t.Fatalf("Read(%d) = writer %d seq %d, but that index was returned for writer %d seq %d", idx, g, seq, key.g, key.seq)
			}
			perWriter[g] = append(perWriter[g], seq)
		}
		for g := 0; g < writers; g++ {
			seqs := perWriter[g]
			for i, s := range seqs {
				if s != i {
					t.Fatalf("writer %d: records in log order have sequences %v..., want 0,1,2,...", g, seqs[:min(len(seqs), i+1)])
				}
			}
		}
	}
	check(l)
	apiClose(t, l)
	l = apiOpen(t, dir, opts)
	check(l)
	if r := l.Recovery(); r.Records != n || r.TornTail || r.Repaired || r.DroppedRecords != 0 {
		t.Errorf("Recovery() after a clean close = %+v, want %d records and nothing dropped", r, n)
	}
}

func TestApiConcurrentCacheFlush(t *testing.T) {
	apiNoEnv(t)
	t.Run("default-bound", func(t *testing.T) {
		apiConcurrent(t, apiShmDir(t), &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}, 8, 450, 3, true)
	})
	t.Run("small-bound", func(t *testing.T) {
		// The smallest in-flight bound makes writers wait for each other.
		apiConcurrent(t, apiShmDir(t), &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush, InFlightBound: 4096}, 8, 150, 1, true)
	})
}

func TestApiConcurrentMsyncGroupCommit(t *testing.T) {
	apiNoEnv(t)
	t.Run("disk", func(t *testing.T) {
		apiConcurrent(t, t.TempDir(), &Options{SegmentSize: apiSeg, Persist: PersistMsync}, 8, 20, 1, true)
	})
	t.Run("shm", func(t *testing.T) {
		apiConcurrent(t, apiShmDir(t), &Options{SegmentSize: apiSeg, Persist: PersistMsync}, 8, 300, 2, true)
	})
}

// apiSetHook installs the group-commit test hook under the log's lock.
func apiSetHook(l *Log, h func() error) {
	l.mu.Lock()
	l.syncHook = h
	l.mu.Unlock()
}

func TestApiMsyncFailurePoisons(t *testing.T) {
	apiNoEnv(t)
	dir := t.TempDir()
	opts := &Options{SegmentSize: apiSeg, Persist: PersistMsync}
	l := apiOpen(t, dir, opts)
	var acked [][]byte
	for i := 0; i < 5; i++ {
		data := apiPayload(uint64(i), 200+i)
		apiAppend(t, l, data)
		acked = append(acked, data)
	}

	injected := errors.New("injected msync failure")
	const waiters = 4
	const pending = 6 // records of the waiters: two Appends and two 2-record batches
	var calls atomic.Int32
	apiSetHook(l, func() error {
		if calls.Add(1) != 1 {
			return nil
		}
		// Fail only once every waiter has reserved its records, so that the
		// one failure meets several waiting appends (bounded wait: it fails
		// anyway after a while).
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			l.mu.Lock()
			l.catchUp()
			n := l.next
			l.mu.Unlock()
			if n == uint64(len(acked))+1+pending {
				break
			}
		}
		return injected
	})
	unacked := map[string]bool{}
	errs := make([]error, waiters)
	var wg sync.WaitGroup
	for w := 0; w < waiters; w++ {
		var recs [][]byte
		if w%2 == 0 {
			recs = [][]byte{apiPayload(uint64(100+w), 300)}
		} else {
			recs = [][]byte{apiPayload(uint64(200+w), 10), apiPayload(uint64(300+w), 20)}
		}
		for _, r := range recs {
			unacked[string(r)] = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if len(recs) == 1 {
				_, errs[w] = l.Append(recs[0])
			} else {
				_, errs[w] = l.AppendBatch(recs)
			}
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if !errors.Is(err, ErrFailed) {
			t.Errorf("append %d waiting on the failed msync: err %v, want ErrFailed", w, err)
		}
		if err != nil && !errors.Is(err, injected) {
			t.Errorf("append %d: error %v does not wrap the msync error", w, err)
		}
	}
	if got := calls.Load(); got < 1 {
		t.Fatalf("syncHook was called %d times", got)
	}
	if l.LastIndex() != uint64(len(acked)) {
		t.Fatalf("LastIndex after the failure = %d, want %d (nothing unacknowledged may be published)", l.LastIndex(), len(acked))
	}
	// The log stays poisoned, even without the hook.
	apiSetHook(l, nil)
	for i := 0; i < 3; i++ {
		if _, err := l.Append([]byte("later")); !errors.Is(err, ErrFailed) {
			t.Fatalf("Append after the failure = %v, want ErrFailed", err)
		}
		if _, err := l.AppendBatch([][]byte{[]byte("later"), nil}); !errors.Is(err, ErrFailed) {
			t.Fatalf("AppendBatch after the failure = %v, want ErrFailed", err)
		}
	}
	if l.LastIndex() != uint64(len(acked)) {
		t.Fatalf("LastIndex = %d, want %d", l.LastIndex(), len(acked))
	}
	// Acknowledged records are still readable.
	apiCheckAll(t, l, acked)
	if err := l.Close(); err != nil {
		t.Fatalf("Close of a failed log: %v", err)
	}

	// Reopened, the log works again and holds every acknowledged record.
	// Unacknowledged records may or may not be there; any that are must be
	// ones the failed appends wrote.
	l = apiOpen(t, dir, opts)
	last := l.LastIndex()
	if l.FirstIndex() != 1 || last < uint64(len(acked)) {
		t.Fatalf("after reopen: FirstIndex, LastIndex = %d, %d; want 1, >= %d", l.FirstIndex(), last, len(acked))
	}
	for i, w := range acked {
		got, err := l.Read(uint64(i + 1))
		if err != nil || !bytes.Equal(got, w) {
			t.Fatalf("after reopen: acknowledged record %d: err %v, intact %v", i+1, err, bytes.Equal(got, w))
		}
	}
	for idx := uint64(len(acked)) + 1; idx <= last; idx++ {
		got, err := l.Read(idx)
		if err != nil {
			t.Fatalf("after reopen: Read(%d): %v", idx, err)
		}
		if !unacked[string(got)] {
			t.Fatalf("after reopen: record %d (%d bytes) is none of the records the failed appends wrote", idx, len(got))
		}
	}
	data := []byte("after reopen")
	if idx := apiAppend(t, l, data); idx != last+1 {
		t.Fatalf("Append after reopen = %d, want %d", idx, last+1)
	}
	if got, err := l.Read(last + 1); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Read(%d) after reopen: %q, %v", last+1, got, err)
	}
}

// An empty AppendBatch on a log that refuses appends after a persistence
// failure must not report success either.
func TestApiFailedLogRefusesEmptyBatch(t *testing.T) {
	apiNoEnv(t)
	l := apiOpen(t, apiShmDir(t), &Options{SegmentSize: apiSeg, Persist: PersistMsync})
	apiAppend(t, l, []byte("acked"))
	apiSetHook(l, func() error { return errors.New("injected msync failure") })
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append with failing msync = %v, want ErrFailed", err)
	}
	apiSetHook(l, nil)
	if _, err := l.Append([]byte("y")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after the failure = %v, want ErrFailed", err)
	}
	if idx, err := l.AppendBatch(nil); !errors.Is(err, ErrFailed) {
		t.Errorf("empty AppendBatch on a failed log = %d, %v; want ErrFailed", idx, err)
	}
}

// TestApiMsyncRollover runs concurrent msync-mode appends across segment
// rollovers in a child process (TestApiMsyncRolloverChild), so that a
// crash of the library shows up as this test failing instead of killing
// the whole test binary.
func TestApiMsyncRollover(t *testing.T) {
	dir := apiShmDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // safety net only
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestApiMsyncRolloverChild$", "-test.count=1", "-test.v", "-test.timeout=150s")
	cmd.Env = append(os.Environ(), "PMWAL_API_MSYNC_CHILD="+dir, "WAL_PERSIST=")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("pmwal-api-msync-child-ok")) {
		t.Fatalf("child process (msync appends across rollover): %v\n%s", err, apiTrim(out))
	}
}

// apiTrim keeps the start of a child's output, where a panic is reported.
func apiTrim(b []byte) []byte {
	if len(b) > 6000 {
		return append(b[:6000:6000], "\n...(truncated)"...)
	}
	return b
}

func TestApiMsyncRolloverChild(t *testing.T) {
	base := os.Getenv("PMWAL_API_MSYNC_CHILD")
	if base == "" {
		t.Skip("runs only as the child of TestApiMsyncRollover")
	}
	opts := &Options{SegmentSize: apiSeg, Persist: PersistMsync}

	t.Run("leader-syncing-during-rollover", func(t *testing.T) {
		// Deterministic: the msync leader for the last record of segment 1
		// is held in syncHook while another append needs a new segment.
		dir := filepath.Join(base, "hook")
		l := apiOpen(t, dir, opts)
		const big = 100000 // 10 such records fill a 1 MiB segment
		var want [][]byte
		for i := 0; i < 9; i++ {
			data := apiPayload(uint64(i), big)
			apiAppend(t, l, data)
			want = append(want, data)
		}
		entered, release := make(chan struct{}), make(chan struct{})
		var calls atomic.Int32
		apiSetHook(l, func() error {
			if calls.Add(1) == 1 {
				close(entered)
				<-release
			}
			return nil
		})
		a, b := apiPayload(100, big), apiPayload(101, 60000) // b does not fit after a
		type res struct {
			idx uint64
			err error
		}
		ra, rb := make(chan res, 1), make(chan res, 1)
		go func() { i, err := l.Append(a); ra <- res{i, err} }()
		<-entered
		go func() { i, err := l.Append(b); rb <- res{i, err} }()
		// Give b the chance to reserve (it may also rightly wait for a to
		// be durable), then let a's msync finish.
		for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			l.mu.Lock()
			l.catchUp()
			n := l.next
			l.mu.Unlock()
			if n == 12 {
				break
			}
		}
		close(release)
		x, y := <-ra, <-rb
		if x.err != nil || x.idx != 10 || y.err != nil || y.idx != 11 {
			t.Fatalf("appends: (%d, %v) and (%d, %v); want (10, nil) and (11, nil)", x.idx, x.err, y.idx, y.err)
		}
		want = append(want, a, b)
		apiSetHook(l, nil)
		for i := 0; i < 30; i++ {
			data := apiPayload(uint64(200+i), 1000+i)
			apiAppend(t, l, data)
			want = append(want, data)
		}
		apiCheckAll(t, l, want)
		apiClose(t, l)
		l = apiOpen(t, dir, opts)
		apiCheckAll(t, l, want)
	})

	t.Run("concurrent", func(t *testing.T) {
		dir := filepath.Join(base, "concurrent")
		l := apiOpen(t, dir, opts)
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[uint64][]byte{}
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 150; i++ {
					data := apiPayload(uint64(g*1000+i), 1000+(i*9973+g*31)%49000)
					idx, err := l.Append(data)
					if err != nil {
						t.Errorf("writer %d: Append: %v", g, err)
						return
					}
					mu.Lock()
					got[idx] = data
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		want := make([][]byte, len(got))
		for idx, data := range got {
			if idx < 1 || idx > uint64(len(got)) {
				t.Fatalf("index %d outside 1..%d", idx, len(got))
			}
			want[idx-1] = data
		}
		if apiActiveSegs(l) < 4 {
			t.Fatalf("only %d segments: no rollover exercised", apiActiveSegs(l))
		}
		apiCheckAll(t, l, want)
		apiClose(t, l)
		l = apiOpen(t, dir, opts)
		apiCheckAll(t, l, want)
	})
	if !t.Failed() {
		fmt.Println("pmwal-api-msync-child-ok")
	}
}

// Existing segments keep the size they were created with, and records as
// large as the new SegmentSize allows work after reopening with a larger one.
func TestApiReopenWithOtherSegmentSize(t *testing.T) {
	apiNoEnv(t)
	dir := apiShmDir(t)
	small := &Options{SegmentSize: apiSeg, Persist: PersistCacheFlush}
	large := &Options{SegmentSize: 2 * apiSeg, Persist: PersistCacheFlush}
	l := apiOpen(t, dir, small)
	apiClose(t, l) // an empty log with one 1 MiB segment

	l = apiOpen(t, dir, large)
	huge := apiPayload(1, apiMaxPayload(2*apiSeg)) // does not fit the first, 1 MiB, segment
	if idx := apiAppend(t, l, huge); idx != 1 {
		t.Fatalf("Append(%d bytes) = %d, want 1", len(huge), idx)
	}
	want := [][]byte{huge}
	for i := 0; i < 5; i++ {
		data := apiPayload(uint64(10+i), 300000)
		apiAppend(t, l, data)
		want = append(want, data)
	}
	apiCheckAll(t, l, want)
	apiClose(t, l)

	sizes := map[int64]int{}
	for _, f := range apiSegFiles(t, dir) {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		sizes[st.Size()]++
	}
	if sizes[apiSeg] != 1 || sizes[2*apiSeg] < 2 || len(sizes) != 2 {
		t.Errorf("segment file sizes %v: want one of 1 MiB and the rest 2 MiB", sizes)
	}

	l = apiOpen(t, dir, small)
	apiCheckAll(t, l, want)
	data := apiPayload(20, 1000)
	apiAppend(t, l, data)
	want = append(want, data)
	apiClose(t, l)
	l = apiOpen(t, dir, large)
	apiCheckAll(t, l, want)
}

// An empty record whose header ends exactly at the end of its segment has
// its (empty) payload at the segment's end: the non-temporal path must not
// take the address of the byte past the mapping. It did, and panicked,
// seen first in TestReview3ApiPastEndTruncateRace.
func TestAppendEmptyAtSegmentEnd(t *testing.T) {
	for _, p := range []Persist{PersistCacheFlush, PersistMsync} {
		t.Run(p.String(), func(t *testing.T) {
			t.Setenv("WAL_PERSIST", "")
			t.Setenv("WAL_NT_THRESHOLD", "0") // every payload takes the non-temporal path
			const size = 1 << 20
			l, err := Open(t.TempDir(), &Options{SegmentSize: size, Persist: p})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			// Fill the first segment up to 32 bytes before its end.
			left := size - segHeaderSize - recHeaderSize
			for left > 0 {
				n := min(4096, left-recHeaderSize)
				if _, err := l.Append(make([]byte, n)); err != nil {
					t.Fatal(err)
				}
				left -= recSize(n)
			}
			for i := 0; i < 2; i++ { // the first one ends the segment, the second starts the next
				idx, err := l.Append(nil)
				if err != nil {
					t.Fatal(err)
				}
				if rec, err := l.Read(idx); err != nil || len(rec) != 0 {
					t.Fatalf("Read(%d) = %q, %v", idx, rec, err)
				}
			}
			if got := len(l.segs); got != 2 {
				t.Fatalf("%d segments, want 2: the first empty record did not end the first segment", got)
			}
		})
	}
}

// TestAppendAllocs checks that an Append and an AppendBatch allocate
// nothing on either persistence path (the offset index's chunks, 32 KiB per
// 8192 records, average out to zero). Counted, not timed: the benchmarks
// report it too, but nothing fails there.
func TestAppendAllocs(t *testing.T) {
	apiNoEnv(t)
	for _, mode := range []Persist{PersistCacheFlush, PersistMsync} {
		t.Run(mode.String(), func(t *testing.T) {
			l := apiOpen(t, apiShmDir(t), &Options{SegmentSize: 64 << 20, Persist: mode})
			rec := make([]byte, 64)
			batch := make([][]byte, 64)
			for i := range batch {
				batch[i] = rec
			}
			if n := testing.AllocsPerRun(2000, func() {
				if _, err := l.Append(rec); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("Append: %v allocations, want 0", n)
			}
			if n := testing.AllocsPerRun(200, func() {
				if _, err := l.AppendBatch(batch); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("AppendBatch of 64: %v allocations, want 0", n)
			}
		})
	}
}
