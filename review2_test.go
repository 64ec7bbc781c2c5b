package wal

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// r2Media wraps the OS media. When armed, the first Remove of a .seg file
// signals entered and waits for release before removing; a ReadDir hook
// runs after the listing.
type r2Media struct {
	Media
	mu        sync.Mutex
	armed     bool
	entered   chan struct{}
	release   chan struct{}
	removed   chan struct{}
	afterList func()
}

func (m *r2Media) Remove(path string) error {
	m.mu.Lock()
	block := m.armed && strings.HasSuffix(path, segSuffix)
	if block {
		m.armed = false
	}
	m.mu.Unlock()
	if block {
		close(m.entered)
		<-m.release
		defer close(m.removed)
	}
	return m.Media.Remove(path)
}

func (m *r2Media) ReadDir(dir string) ([]fs.DirEntry, error) {
	e, err := m.Media.ReadDir(dir)
	m.mu.Lock()
	f := m.afterList
	m.mu.Unlock()
	if f != nil {
		f()
	}
	return e, err
}

func r2OSMedia(t *testing.T) Media {
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	return &osMedia{hw: &h}
}

// TestReview2CloseDuringTruncateFront: TruncateFront unlinks the emptied
// segment files after it has let go of closeMu, so Close returns (and
// releases the directory lock) while the truncation is still changing the
// directory. A second Open that lists the directory meanwhile fails when
// the old Log's removal lands between its listing and its opening of the
// file.
func TestReview2CloseDuringTruncateFront(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	dir := rtDir(t)
	m := &r2Media{Media: r2OSMedia(t), entered: make(chan struct{}), release: make(chan struct{}), removed: make(chan struct{})}
	l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, Media: m})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ { // 3 segments
		if _, err := l.Append(bytes.Repeat([]byte{1}, 200_000)); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	m.armed = true
	m.mu.Unlock()
	tfDone := make(chan error, 1)
	go func() { tfDone <- l.TruncateFront(l.LastIndex()) }()
	<-m.entered // TruncateFront is about to unlink 1.seg

	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		close(m.release)
		t.Fatalf("Close returned (%v) while TruncateFront was still removing files", err)
	case <-time.After(300 * time.Millisecond): // Close waits, as it must
	}
	close(m.release)
	if err := <-tfDone; err != nil {
		t.Fatalf("TruncateFront: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	l2, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer l2.Close()
	if l2.FirstIndex() != 12 || l2.LastIndex() != 12 {
		t.Fatalf("after reopen: %d..%d, want 12..12", l2.FirstIndex(), l2.LastIndex())
	}
}

func TestReview2ReadOnlyDroppedRedoCut(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	dir := rtDir(t)
	o := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush}
	l := rtOpen(t, dir, o)
	for i := 0; i < 12; i++ { // 3 segments
		if _, err := l.Append(bytes.Repeat([]byte{byte(i + 1)}, 200_000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash just after TruncateBack(2) made its intent durable.
	var b [metaSize]byte
	encodeMeta(b[:], meta{first: 1, cut: 2, cutting: true})
	if err := os.WriteFile(filepath.Join(dir, metaName), b[:], 0o600); err != nil {
		t.Fatal(err)
	}
	snap := rtSnapshot(t, dir)
	ro := *o
	ro.ReadOnly = true
	r, err := Open(dir, &ro)
	if err != nil {
		t.Fatal(err)
	}
	last, rep := r.LastIndex(), r.Recovery()
	r.Close()
	rtSameFiles(t, dir, snap, "read-only Open")
	w := rtOpen(t, dir, o)
	wlast := w.LastIndex()
	t.Logf("read-only LastIndex %d, writer LastIndex %d; read-only Dropped %v, DroppedFiles %v, DroppedBytes %d",
		last, wlast, rep.Dropped, rep.DroppedFiles, rep.DroppedBytes)
	if last != 2 || wlast != 2 {
		t.Fatalf("LastIndex read-only %d writer %d, want 2", last, wlast)
	}
	if len(rep.Dropped) == 0 {
		t.Fatalf("the writer dropped records 3..12 (zeroed the rest of segment 1, removed segments 2 and 3), but Recovery().Dropped is empty")
	}
}

// TestReview2ReadOnlyNeedsNewSegment: where a writer's Open would make a
// new segment (here an interrupted TruncateFront past the end, crashed
// before the background preparation of the spare finished), the read-only
// Open fails instead of showing the (empty) log the writer keeps.
func TestReview2ReadOnlyNeedsNewSegment(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	dir := rtDir(t)
	o := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush}
	l := rtOpen(t, dir, o)
	for i := 0; i < 10; i++ {
		if _, err := l.Append([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(rtSegPath(dir, 2)) // the spare was not yet prepared at the crash
	var b [metaSize]byte
	encodeMeta(b[:], meta{first: 100})
	if err := os.WriteFile(filepath.Join(dir, metaName), b[:], 0o600); err != nil {
		t.Fatal(err)
	}
	ro := *o
	ro.ReadOnly = true
	r, rerr := Open(dir, &ro)
	if rerr == nil {
		r.Close()
	}
	w := rtOpen(t, dir, o)
	t.Logf("writer: FirstIndex %d LastIndex %d", w.FirstIndex(), w.LastIndex())
	if rerr != nil {
		t.Fatalf("read-only Open failed where a writer's Open succeeds: %v (errors.Is ErrReadOnly: %v)", rerr, errors.Is(rerr, ErrReadOnly))
	}
}

// TestReview2ReadOnlyNoLockFile: a log directory without a LOCK file (a
// copied or restored log) is opened read-only with no lock at all, so a
// writer's Open is not refused while the reader has it open.
func TestReview2ReadOnlyNoLockFile(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	dir := rtDir(t)
	o := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush}
	l := rtOpen(t, dir, o)
	if _, err := l.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	os.Remove(filepath.Join(dir, lockName))
	ro := *o
	ro.ReadOnly = true
	r, err := Open(dir, &ro)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := Open(dir, o)
	if err == nil {
		w.Close()
		t.Fatalf("a writer opened the log while a read-only Log had it open (want ErrLocked)")
	}
}

// TestReview2RaceStress: appenders, iterators, tailers, Stats and both
// truncations at once, with recycling, in msync (pwrite) mode.
func TestReview2RaceStress(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	dir := rtDir(t)
	l := rtOpen(t, dir, &Options{SegmentSize: 1 << 20, Persist: PersistMsync, RecycleSegments: 2, InFlightBound: 16 << 10})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rec := bytes.Repeat([]byte{byte(g)}, 1000+i%30000)
				var err error
				if i%3 == 0 {
					_, err = l.AppendBatch([][]byte{rec, rec[:10]})
				} else {
					_, err = l.Append(rec)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			it := l.Records(l.FirstIndex())
			for idx, rec := range it.All() {
				if len(rec) > 0 && rec[0] > 2 {
					errc <- errors.New("bad record")
					return
				}
				_ = idx
			}
			if err := it.Err(); err != nil && !errors.Is(err, ErrNotFound) {
				errc <- err
				return
			}
			l.Stats()
		}
	}()
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		f, last := l.FirstIndex(), l.LastIndex()
		if last > f+10 {
			if err := l.TruncateFront(f + (last-f)*3/4); err != nil {
				t.Fatal(err)
			}
		}
		if last := l.LastIndex(); last > l.FirstIndex()+5 && time.Now().UnixNano()%4 == 0 {
			if err := l.TruncateBack(last - 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	t.Logf("stats: %+v", l.Stats().Recycled)
}
