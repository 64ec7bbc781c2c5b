package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
)

func truncOpen(t *testing.T, dir string) *Log {
	t.Helper()
	l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func truncDir(t *testing.T) string {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-trunc-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func truncRec(i uint64) []byte { return bytes.Repeat([]byte(fmt.Sprintf("r%d.", i)), int(i%97)+1) }

func truncFill(t *testing.T, l *Log, to uint64) {
	t.Helper()
	for i := l.LastIndex() + 1; i <= to; i++ {
		if idx, err := l.Append(truncRec(i)); err != nil || idx != i {
			t.Fatalf("append %d: %d, %v", i, idx, err)
		}
	}
}

// truncCheck asserts the log holds exactly first..last with the records
// truncRec wrote at those indexes.
func truncCheck(t *testing.T, l *Log, first, last uint64) {
	t.Helper()
	if l.FirstIndex() != first || l.LastIndex() != last {
		t.Fatalf("log holds %d..%d, want %d..%d", l.FirstIndex(), l.LastIndex(), first, last)
	}
	for i := first; i <= last; i++ {
		got, err := l.Read(i)
		if err != nil || !bytes.Equal(got, truncRec(i)) {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if first > 1 {
		if _, err := l.Read(first - 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Read(%d) below the first index: %v", first-1, err)
		}
	}
}

func TestTruncateFront(t *testing.T) {
	dir := truncDir(t)
	l := truncOpen(t, dir)
	truncFill(t, l, 20000) // several 1 MiB segments
	segsBefore := len(l.segs)
	if err := l.TruncateFront(9000); err != nil {
		t.Fatal(err)
	}
	truncCheck(t, l, 9000, 20000)
	if len(l.segs) >= segsBefore {
		t.Fatalf("no segment file removed: %d before, %d after", segsBefore, len(l.segs))
	}
	if err := l.TruncateFront(100); err != nil { // below FirstIndex: nothing
		t.Fatal(err)
	}
	truncFill(t, l, 20100)
	l.Close()
	l = truncOpen(t, dir)
	truncCheck(t, l, 9000, 20100)
	// Past the end: empty, numbering continues there.
	if err := l.TruncateFront(50000); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() != 50000 || l.LastIndex() != 49999 {
		t.Fatalf("after TruncateFront past the end: %d..%d", l.FirstIndex(), l.LastIndex())
	}
	truncFill(t, l, 50010)
	l.Close()
	l = truncOpen(t, dir)
	defer l.Close()
	truncCheck(t, l, 50000, 50010)
	if n := len(l.segs); n != 1 {
		t.Fatalf("%d segments after an emptying truncation", n)
	}
}

func TestTruncateFrontEmptyLog(t *testing.T) {
	dir := truncDir(t)
	l := truncOpen(t, dir)
	if err := l.TruncateFront(1000); err != nil {
		t.Fatal(err)
	}
	if idx, err := l.Append(truncRec(1000)); err != nil || idx != 1000 {
		t.Fatalf("first append after snapshot install: %d, %v", idx, err)
	}
	l.Close()
	l = truncOpen(t, dir)
	defer l.Close()
	truncCheck(t, l, 1000, 1000)
}

func TestTruncateBack(t *testing.T) {
	dir := truncDir(t)
	l := truncOpen(t, dir)
	truncFill(t, l, 20000)
	if err := l.TruncateBack(15000); err != nil {
		t.Fatal(err)
	}
	truncCheck(t, l, 1, 15000)
	// Overwrite the dropped indexes with other contents: the old ones must
	// never come back.
	for i := uint64(15001); i <= 15100; i++ {
		if idx, err := l.Append([]byte("new")); err != nil || idx != i {
			t.Fatalf("append %d after truncation: %d, %v", i, idx, err)
		}
	}
	l.Close()
	l = truncOpen(t, dir)
	if l.LastIndex() != 15100 {
		t.Fatalf("LastIndex %d after reopen, want 15100", l.LastIndex())
	}
	for i := uint64(15001); i <= 15100; i++ {
		if got, _ := l.Read(i); string(got) != "new" {
			t.Fatalf("record %d is %q after reopen", i, got)
		}
	}
	// Back to a segment boundary and into an earlier segment.
	if err := l.TruncateBack(10); err != nil {
		t.Fatal(err)
	}
	truncCheck(t, l, 1, 10)
	if err := l.TruncateBack(l.FirstIndex() - 1); err != nil { // empties the log
		t.Fatal(err)
	}
	if l.LastIndex() != 0 {
		t.Fatalf("LastIndex %d after truncating everything", l.LastIndex())
	}
	if err := l.TruncateBack(100); err != nil { // past the end: nothing
		t.Fatal(err)
	}
	truncFill(t, l, 30)
	l.Close()
	l = truncOpen(t, dir)
	defer l.Close()
	truncCheck(t, l, 1, 30)
	if err := l.TruncateFront(20); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateBack(5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("TruncateBack below FirstIndex-1: %v", err)
	}
	if err := l.TruncateBack(19); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() != 20 || l.LastIndex() != 19 {
		t.Fatalf("log holds %d..%d", l.FirstIndex(), l.LastIndex())
	}
}

func TestTruncateAfterClose(t *testing.T) {
	l := truncOpen(t, truncDir(t))
	l.Close()
	if err := l.TruncateFront(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("TruncateFront after Close: %v", err)
	}
	if err := l.TruncateBack(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("TruncateBack after Close: %v", err)
	}
}

// TestCutBelow checks the cut history tailers consult: a cut since the
// tailer's count that kept only indexes below its last record says so,
// whichever later cuts kept more, and a count older than the history kept
// says so too.
func TestCutBelow(t *testing.T) {
	var l Log
	l.markCut(100) // count 1
	l.markCut(50)  // 2
	l.markCut(80)  // 3
	l.markCut(90)  // 4
	for _, c := range []struct {
		since, index uint64
		want         bool
	}{
		{0, 100, true}, {0, 50, false}, {0, 51, true},
		{1, 51, true}, {1, 50, false},
		{2, 80, false}, {2, 81, true},
		{3, 90, false}, {3, 91, true},
		{4, 1000, false},
	} {
		if got := l.cutBelow(c.since, c.index); got != c.want {
			t.Errorf("cutBelow(%d, %d) = %v, want %v", c.since, c.index, got, c.want)
		}
	}
	// Rising cuts overflow the history: counts from before it are answered
	// with yes, later ones exactly.
	for i := range uint64(maxCutMarks + 10) {
		l.markCut(1000 + i)
	}
	if len(l.cutMarks) != maxCutMarks {
		t.Fatalf("%d marks kept, want %d", len(l.cutMarks), maxCutMarks)
	}
	if !l.cutBelow(4, 1_000_000) {
		t.Error("a count older than the history: cutBelow = false, want true")
	}
	since := l.cuts - 5
	if got := l.cutBelow(since, 1000+maxCutMarks+5); got {
		t.Errorf("cutBelow(%d, at the next cut's index) = true, want false", since)
	}
	if got := l.cutBelow(since, 1000+maxCutMarks+6); !got {
		t.Errorf("cutBelow(%d, above the next cut's index) = false, want true", since)
	}
}
