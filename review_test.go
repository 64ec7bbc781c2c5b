package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- a Media that "crashes" (panics) before its n-th durable operation ----

type reviewCrash struct{}

type reviewMedia struct {
	Media
	left atomic.Int64 // ops before the crash; <= 0: disarmed
	hit  atomic.Bool
}

func (m *reviewMedia) Deterministic() bool { return true }

func (m *reviewMedia) step() {
	if m.left.Load() <= 0 {
		return
	}
	if m.left.Add(-1) == 0 {
		m.hit.Store(true)
		panic(reviewCrash{})
	}
}

func (m *reviewMedia) CreateSegment(path string, size int64, header []byte, perm fs.FileMode) error {
	m.step()
	return m.Media.CreateSegment(path, size, header, perm)
}
func (m *reviewMedia) ReplaceFile(path string, data []byte, perm fs.FileMode) error {
	m.step()
	return m.Media.ReplaceFile(path, data, perm)
}
func (m *reviewMedia) Remove(path string) error { m.step(); return m.Media.Remove(path) }
func (m *reviewMedia) SyncDir(dir string) error { m.step(); return m.Media.SyncDir(dir) }
func (m *reviewMedia) Open(path string) (MediaFile, error) {
	f, err := m.Media.Open(path)
	if err != nil {
		return nil, err
	}
	return &reviewFile{MediaFile: f, m: m}, nil
}

type reviewFile struct {
	MediaFile
	m *reviewMedia
}

func (f *reviewFile) Map(want Persist) (Mapping, error) {
	mp, err := f.MediaFile.Map(want)
	if err != nil {
		return nil, err
	}
	return &reviewMapping{Mapping: mp, m: f.m}, nil
}

type reviewMapping struct {
	Mapping
	m *reviewMedia
}

func (mp *reviewMapping) Fence() error          { mp.m.step(); return mp.Mapping.Fence() }
func (mp *reviewMapping) Sync(off, n int) error { mp.m.step(); return mp.Mapping.Sync(off, n) }

func reviewOpenCrashy(t *testing.T, dir string) (*Log, *reviewMedia) {
	t.Helper()
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	m := &reviewMedia{Media: &osMedia{hw: &h}}
	l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush, Media: m})
	if err != nil {
		t.Fatal(err)
	}
	return l, m
}

// reviewHolds reports whether l holds exactly first..last with content(i).
func reviewHolds(l *Log, first, last uint64, content func(uint64) []byte) error {
	if l.FirstIndex() != first || l.LastIndex() != last {
		return fmt.Errorf("log holds %d..%d, want %d..%d", l.FirstIndex(), l.LastIndex(), first, last)
	}
	for i := first; i <= last && i != 0; i++ {
		got, err := l.Read(i)
		if err != nil || !bytes.Equal(got, content(i)) {
			return fmt.Errorf("record %d: %v (%q)", i, err, got)
		}
	}
	return nil
}

func reviewNew(i uint64) []byte { return []byte(fmt.Sprintf("new-%d", i)) }

// reviewSweep crashes op at every durable step in turn and checks that
// recovery gives either the state before or the state after, and that
// after more appends and a reopen the records stay as appended.
func reviewSweep(t *testing.T, name string, setup func(t *testing.T, l *Log) (fill uint64), op func(l *Log, fill uint64) error,
	after func(fill uint64) (first, last uint64)) {
	for n := int64(1); n < 200; n++ {
		dir := truncDir(t)
		l, m := reviewOpenCrashy(t, dir)
		fill := setup(t, l)
		oldFirst, oldLast := l.FirstIndex(), l.LastIndex()
		newFirst, newLast := after(fill)
		m.left.Store(n)
		crashed := func() (crashed bool) {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(reviewCrash); !ok {
						panic(r)
					}
					crashed = true
				}
			}()
			if err := op(l, fill); err != nil {
				t.Fatalf("%s: op: %v", name, err)
			}
			return false
		}()
		m.left.Store(0)
		if !crashed {
			t.Logf("%s: %d crash points", name, n-1)
			// Check the no-crash result too, then stop.
			if err := reviewHolds(l, newFirst, newLast, truncRec); err != nil {
				t.Fatalf("%s: no crash: %v", name, err)
			}
			l.Close()
			return
		}
		// "Crash": drop the mappings without any further write.
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.closeFiles()

		l2, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
		if err != nil {
			t.Fatalf("%s: crash at step %d: reopen: %v", name, n, err)
		}
		errOld := reviewHolds(l2, oldFirst, oldLast, truncRec)
		errNew := reviewHolds(l2, newFirst, newLast, truncRec)
		if errOld != nil && errNew != nil {
			l2.Close()
			t.Fatalf("%s: crash at step %d: neither before (%v) nor after (%v)", name, n, errOld, errNew)
		}
		first, last := l2.FirstIndex(), l2.LastIndex()
		for i := last + 1; i <= last+5; i++ {
			if idx, err := l2.Append(reviewNew(i)); err != nil || idx != i {
				t.Fatalf("%s: crash at step %d: append %d: %d, %v", name, n, i, idx, err)
			}
		}
		l2.Close()
		l3, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
		if err != nil {
			t.Fatalf("%s: crash at step %d: second reopen: %v", name, n, err)
		}
		content := func(i uint64) []byte {
			if i > last {
				return reviewNew(i)
			}
			return truncRec(i)
		}
		if err := reviewHolds(l3, first, last+5, content); err != nil {
			l3.Close()
			t.Fatalf("%s: crash at step %d: after more appends and reopen: %v", name, n, err)
		}
		l3.Close()
	}
}

func reviewFill(t *testing.T, l *Log, to uint64) {
	t.Helper()
	truncFill(t, l, to)
}

func TestReviewCrashSweep(t *testing.T) {
	const N = 12000
	fillN := func(t *testing.T, l *Log) uint64 { reviewFill(t, l, N); return N }
	// segment boundary: first index of the second-to-last segment.
	boundary := func(l *Log) uint64 { return l.segs[len(l.segs)-1].first }

	var bnd uint64
	setupB := func(t *testing.T, l *Log) uint64 { reviewFill(t, l, N); bnd = boundary(l); return N }

	cases := []struct {
		name  string
		setup func(t *testing.T, l *Log) uint64
		op    func(l *Log, fill uint64) error
		after func(fill uint64) (uint64, uint64)
	}{
		{"back-mid", fillN, func(l *Log, _ uint64) error { return l.TruncateBack(N - 3000) }, func(uint64) (uint64, uint64) { return 1, N - 3000 }},
		{"back-inlast", fillN, func(l *Log, _ uint64) error { return l.TruncateBack(N - 5) }, func(uint64) (uint64, uint64) { return 1, N - 5 }},
		{"back-boundary-1", setupB, func(l *Log, _ uint64) error { return l.TruncateBack(bnd - 1) }, func(uint64) (uint64, uint64) { return 1, bnd - 1 }},
		{"back-boundary", setupB, func(l *Log, _ uint64) error { return l.TruncateBack(bnd) }, func(uint64) (uint64, uint64) { return 1, bnd }},
		{"back-all", fillN, func(l *Log, _ uint64) error { return l.TruncateBack(0) }, func(uint64) (uint64, uint64) { return 1, 0 }},
		{"front-mid", fillN, func(l *Log, _ uint64) error { return l.TruncateFront(7000) }, func(uint64) (uint64, uint64) { return 7000, N }},
		{"front-boundary", setupB, func(l *Log, _ uint64) error { return l.TruncateFront(bnd) }, func(uint64) (uint64, uint64) { return bnd, N }},
		{"front-end", fillN, func(l *Log, _ uint64) error { return l.TruncateFront(N + 1) }, func(uint64) (uint64, uint64) { return N + 1, N }},
		{"front-past", fillN, func(l *Log, _ uint64) error { return l.TruncateFront(N + 100) }, func(uint64) (uint64, uint64) { return N + 100, N + 99 }},
		{"back-in-batch", func(t *testing.T, l *Log) uint64 {
			var recs [][]byte
			for i := uint64(1); i <= 10; i++ {
				recs = append(recs, truncRec(i))
			}
			if _, err := l.AppendBatch(recs); err != nil {
				t.Fatal(err)
			}
			return 10
		}, func(l *Log, _ uint64) error { return l.TruncateBack(6) }, func(uint64) (uint64, uint64) { return 1, 6 }},
		{"back-after-rollover", func(t *testing.T, l *Log) uint64 {
			reviewFill(t, l, N)
			for len(l.segs) < 4 || l.segs[len(l.segs)-1].first != l.LastIndex() {
				reviewFill(t, l, l.LastIndex()+1)
			}
			return l.LastIndex()
		}, func(l *Log, fill uint64) error { return l.TruncateBack(fill - 1) }, nil},
		{"front-then-back-empty", func(t *testing.T, l *Log) uint64 {
			reviewFill(t, l, N)
			if err := l.TruncateFront(7000); err != nil {
				t.Fatal(err)
			}
			return N
		}, func(l *Log, _ uint64) error { return l.TruncateBack(6999) }, func(uint64) (uint64, uint64) { return 7000, 6999 }},
	}
	for _, c := range cases {
		if c.after == nil {
			var fillAt uint64
			setup := c.setup
			c.setup = func(t *testing.T, l *Log) uint64 { fillAt = setup(t, l); return fillAt }
			c.after = func(uint64) (uint64, uint64) { return 1, fillAt - 1 }
		}
		t.Run(c.name, func(t *testing.T) { reviewSweep(t, c.name, c.setup, c.op, c.after) })
	}
}

// ---- edge cases ----

func TestReviewTruncateBackMaxIndex(t *testing.T) {
	l := truncOpen(t, truncDir(t))
	defer l.Close()
	truncFill(t, l, 10)
	// "an index at or past LastIndex changes nothing"
	if err := l.TruncateBack(math.MaxUint64); err != nil {
		t.Fatalf("TruncateBack(MaxUint64) = %v, want nil (index past LastIndex changes nothing)", err)
	}
}

// A Records loop body that reads the log (not forbidden by the docs)
// deadlocks as soon as another goroutine starts a truncation: the loop holds
// closeMu shared, the truncation queues for it exclusively, and the nested
// RLock in Read queues behind the truncation.
func TestReviewIteratorReadDeadlock(t *testing.T) {
	l := truncOpen(t, truncDir(t))
	truncFill(t, l, 10)
	done := make(chan error, 1)
	go func() {
		it := l.Records(1)
		for idx := range it.All() {
			if idx == 1 {
				go l.TruncateFront(5)
				time.Sleep(100 * time.Millisecond)
			}
			if _, err := l.Read(idx); err != nil && !errors.Is(err, ErrNotFound) {
				done <- err
				return
			}
			break
		}
		done <- it.Err()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	case <-time.After(3 * time.Second):
		t.Fatal("deadlock: Read inside a Records loop while TruncateFront waits")
	}
}

// Stats touches the segments' mappings under l.mu only; Close unmaps them
// (and clears l.segs) after releasing l.mu.
func TestReviewStatsDuringClose(t *testing.T) {
	for round := 0; round < 200; round++ {
		l := truncOpen(t, truncDir(t))
		truncFill(t, l, 12000) // several segments
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var panicked atomic.Value
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Turn a fault on an unmapped segment into a recoverable panic.
				defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
				defer func() {
					if r := recover(); r != nil {
						panicked.Store(fmt.Sprint(r))
					}
				}()
				for {
					select {
					case <-stop:
						return
					default:
					}
					l.Stats()
				}
			}()
		}
		time.Sleep(time.Millisecond)
		l.Close()
		close(stop)
		wg.Wait()
		if p := panicked.Load(); p != nil {
			t.Fatalf("round %d: Stats during Close panicked: %v", round, p)
		}
	}
}

// A Media whose Remove fails on demand.
type reviewFailRemove struct {
	Media
	fail atomic.Bool
}

func (m *reviewFailRemove) Remove(path string) error {
	if m.fail.Load() {
		return errors.New("injected remove failure")
	}
	return m.Media.Remove(path)
}

// TruncateFront closes segs[0] in dropSegment before Remove; when Remove
// (or SyncDir) fails it returns with the log still usable and the closed
// segment still in l.segs: Stats then touches its nil mapping.
func TestReviewTruncateFrontRemoveFails(t *testing.T) {
	l := truncOpen(t, truncDir(t))
	defer l.Close()
	truncFill(t, l, 12000)
	// Swapped once no background segment preparation runs (it reads
	// l.media), under the lock that orders it before the next one.
	l.mu.Lock()
	l.takePrepared()
	m := &reviewFailRemove{Media: l.media}
	l.media = m
	l.mu.Unlock()
	m.fail.Store(true)
	if err := l.TruncateFront(l.segs[1].first); err == nil {
		t.Fatal("expected the injected error")
	}
	m.fail.Store(false)
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("Stats after a failed TruncateFront panicked: %v", r)
			}
		}()
		l.Stats()
	}()
}
