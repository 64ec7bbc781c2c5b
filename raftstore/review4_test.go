package raftstore

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pmwal/wal"
)

// TestReview4RaftIndexesAfterClose: Close documents "Methods called after
// Close fail with an error wrapping wal.ErrClosed"; FirstIndex, LastIndex
// and DeleteRange once returned no error after Close.
func TestReview4RaftIndexesAfterClose(t *testing.T) {
	s, _, _ := openTest(t)
	if err := s.StoreLogs(entries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FirstIndex(); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("FirstIndex after Close = %d, %v; want an error wrapping wal.ErrClosed", got, err)
	}
	if got, err := s.LastIndex(); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("LastIndex after Close = %d, %v; want an error wrapping wal.ErrClosed", got, err)
	}
	// A range that lies outside the (closed) log.
	if err := s.DeleteRange(100, 200); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("DeleteRange after Close = %v; want an error wrapping wal.ErrClosed", err)
	}
}

// TestReview4RaftLastIndexNeverStored: LastIndex (and FirstIndex) must
// not return an index the store never held. They once read the wal's first
// and last index under two separate locks, outside the Store's writer
// mutex. Storing the first entry of an empty log at index
// N is TruncateFront(N) (the wal then holds 1..N-1 as "first N, last
// N-1") followed by AppendBatch; a LastIndex that reads first before the
// TruncateFront and last between the two returns N-1, an index the store
// never held at any moment (the store only ever holds nothing, or N).
func TestReview4RaftLastIndexNeverStored(t *testing.T) {
	s, _, _ := openTest(t)
	const step = 1000
	var stop atomic.Bool
	var bad atomic.Uint64
	var badFirst atomic.Uint64
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				last, err := s.LastIndex()
				if err != nil {
					return
				}
				if last%step != 0 {
					bad.CompareAndSwap(0, last)
				}
				first, _ := s.FirstIndex()
				if first%step != 0 {
					badFirst.CompareAndSwap(0, first)
				}
			}
		}()
	}
	// Legal states: empty (0, 0), or exactly one entry at a multiple of step.
	for i := uint64(1); i <= 3000 && bad.Load() == 0; i++ {
		if err := s.StoreLog(entry(i*step, 1)); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRange(0, math.MaxUint64); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != 0 {
		t.Errorf("LastIndex returned %d, an index the store never held (it held nothing or a multiple of %d)", v, step)
	}
	if v := badFirst.Load(); v != 0 {
		t.Errorf("FirstIndex returned %d, an index the store never held", v)
	}
}
