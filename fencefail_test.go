package wal

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

// fenceFailMedia passes everything through to the OS Media except that
// the failAt-th Fence after arming fails (the error a Fence gives when a
// flush could not be made durable: on the portable path, a failed msync).
// Only that one: osMapping's error sticks to every later Fence of its
// mapping, and would cover for a caller that dropped the first one.
type fenceFailMedia struct {
	Media
	mu     sync.Mutex
	armed  bool
	fences int // since arming
	failAt int // 0: never
	// panicWith, if set, is panicked with at that Fence instead of
	// failing it: a Media that panics in the middle of an append.
	panicWith error
	// before, if set, is called at the start of every Fence.
	before func()
}

var errInjectedFence = errors.New("injected flush failure")

func (m *fenceFailMedia) Deterministic() bool { return true } // segment preparation inline: a fixed order of fences

func (m *fenceFailMedia) Open(path string) (MediaFile, error) {
	f, err := m.Media.Open(path)
	if err != nil {
		return nil, err
	}
	return &fenceFailFile{MediaFile: f, m: m}, nil
}

type fenceFailFile struct {
	MediaFile
	m *fenceFailMedia
}

func (f *fenceFailFile) Map(want Persist) (Mapping, error) {
	mp, err := f.MediaFile.Map(want)
	if err != nil {
		return nil, err
	}
	return &fenceFailMapping{Mapping: mp, m: f.m}, nil
}

type fenceFailMapping struct {
	Mapping
	m *fenceFailMedia
}

func (mp *fenceFailMapping) Fence() error {
	if mp.m.before != nil {
		mp.m.before()
	}
	err := mp.Mapping.Fence()
	mp.m.mu.Lock()
	defer mp.m.mu.Unlock()
	if mp.m.armed {
		mp.m.fences++
		if mp.m.fences == mp.m.failAt && err == nil {
			if mp.m.panicWith != nil {
				panic(mp.m.panicWith)
			}
			err = errInjectedFence
		}
	}
	return err
}

// TestFenceFailureThroughAppend fails each Fence of a workload in turn
// (single appends, batches, rollovers into new segments) on the cache-flush
// path, and checks what a failed flush must mean through the whole append
// path: the append that met it fails with ErrFailed wrapping the cause,
// nothing it wrote is published, the log refuses every later append, the
// acknowledged records stay readable, and after a reopen they are all
// there, followed at most by records the failed append wrote.
func TestFenceFailureThroughAppend(t *testing.T) {
	rtEnv(t)
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	// op i: a single ~20 KiB record (50 fill a segment) or a batch of three.
	op := func(i int) [][]byte {
		if i%3 == 2 {
			return [][]byte{apiPayload(uint64(3*i), 7), nil, apiPayload(uint64(3*i+1), 300)}
		}
		return [][]byte{apiPayload(uint64(3*i+2), 20000+i)}
	}
	const ops = 160 // three segments and a bit
	run := func(failAt int) (failed bool) {
		dir := rtDir(t)
		m := &fenceFailMedia{Media: &osMedia{hw: &h}, failAt: failAt}
		o := rtOpts(false)
		o.Media = m
		l := rtOpen(t, dir, o)
		m.mu.Lock()
		m.armed = true
		m.mu.Unlock()
		var acked [][]byte
		unacked := map[string]bool{}
		for i := 0; i < ops && !failed; i++ {
			recs := op(i)
			var err error
			if len(recs) == 1 {
				_, err = l.Append(recs[0])
			} else {
				_, err = l.AppendBatch(recs)
			}
			switch {
			case err == nil:
				acked = append(acked, recs...)
			case errors.Is(err, ErrFailed) && errors.Is(err, errInjectedFence):
				failed = true
				for _, r := range recs {
					unacked[string(r)] = true
				}
			default:
				t.Fatalf("fence %d: op %d: %v, want ErrFailed wrapping the flush error", failAt, i, err)
			}
		}
		if !failed {
			m.mu.Lock()
			met := m.fences
			m.mu.Unlock()
			if met >= failAt {
				t.Fatalf("fence %d of %d failed, and no append reported it", failAt, met)
			}
			rtClose(t, l)
			return false
		}
		if got := l.LastIndex(); got != uint64(len(acked)) {
			t.Fatalf("fence %d: LastIndex %d after the failure, want %d: an unacknowledged record was published", failAt, got, len(acked))
		}
		if _, err := l.Append([]byte("later")); !errors.Is(err, ErrFailed) {
			t.Fatalf("fence %d: Append after the failure = %v, want ErrFailed", failAt, err)
		}
		if _, err := l.AppendBatch([][]byte{[]byte("later")}); !errors.Is(err, ErrFailed) {
			t.Fatalf("fence %d: AppendBatch after the failure = %v, want ErrFailed", failAt, err)
		}
		for i, w := range acked {
			if got, err := l.Read(uint64(i + 1)); err != nil || !bytes.Equal(got, w) {
				t.Fatalf("fence %d: acknowledged record %d after the failure: %v (intact %v)", failAt, i+1, err, bytes.Equal(got, w))
			}
		}
		l.Close() // a failed log may say why; it must still release the directory

		l = rtOpen(t, dir, rtOpts(false))
		last := l.LastIndex()
		if l.FirstIndex() != 1 || last < uint64(len(acked)) {
			t.Fatalf("fence %d: reopened log holds %d..%d, want 1..>=%d", failAt, l.FirstIndex(), last, len(acked))
		}
		for i := uint64(1); i <= last; i++ {
			got, err := l.Read(i)
			if err != nil {
				t.Fatalf("fence %d: reopened: Read(%d): %v", failAt, i, err)
			}
			if i <= uint64(len(acked)) && !bytes.Equal(got, acked[i-1]) {
				t.Fatalf("fence %d: reopened: acknowledged record %d differs", failAt, i)
			}
			if i > uint64(len(acked)) && !unacked[string(got)] {
				t.Fatalf("fence %d: reopened: record %d (%d bytes) is none the failed append wrote", failAt, i, len(got))
			}
		}
		if idx, err := l.Append([]byte("after reopen")); err != nil || idx != last+1 {
			t.Fatalf("fence %d: Append after reopen = %d, %v; want %d", failAt, idx, err, last+1)
		}
		rtClose(t, l)
		return true
	}
	n := 1
	for ; run(n); n++ {
	}
	if n < ops {
		t.Fatalf("the workload met only %d fences; want at least one per op (%d)", n-1, ops)
	}
	t.Logf("failed each of %d fences in turn", n-1)
}
