package wal

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppendFloor is the least an Append built on this log's data pass
// can cost: the real writeRecords (checksums, non-temporal or plain stores
// with write-back, one fence) into a real segment of an open log, with the
// log's reservation, publication, read index, statistics and fault guard
// replaced by the cheapest concurrency control possible: one atomic add
// that hands out the space and the index, and one atomic add that
// publishes, each on its own cache line. It keeps none of Append's
// promises (no in-order publication, no in-flight bound, no rollover, and
// the log's own state is left untouched), so it is a bound, not a design.
//
// With goroutines=1, ns/op bounds a single Append from below: beside
// pmemlog_append it shows how far any lock-free reservation scheme could
// take the ratio. With goroutines=2 (ns/op is wall time per append across
// both), appends/s bounds what two cores can reach while they share a
// log's index and each append makes its own data pass and fence (a design
// that combines appenders into batches, sharing one fence, is not bounded
// by it), to set beside BenchmarkAppendParallel.
func BenchmarkAppendFloor(b *testing.B) {
	for _, size := range []int{64, 256} {
		for _, g := range []int{1, 2} {
			b.Run(fmt.Sprintf("size=%d/goroutines=%d", size, g), func(b *testing.B) {
				benchFloor(b, size, g)
			})
		}
	}
}

// floorCounters are the two shared words of BenchmarkAppendFloor, on
// separate cache lines, as a lock-free log would keep its reservation and
// publication points.
type floorCounters struct {
	_        [64]byte
	reserved atomic.Uint64
	_        [56]byte
	publish  atomic.Uint64
	_        [56]byte
}

func benchFloor(b *testing.B, size, goroutines int) {
	l := benchOpen(b)
	l.mu.Lock()
	seg, start, first := l.segs[len(l.segs)-1], l.tail, l.next
	l.mu.Unlock()
	n := recSize(size)
	slots := uint64((seg.size() - start) / n) // records wrap round the segment
	if slots == 0 {
		b.Fatalf("a %d-byte segment holds no %d-byte record", seg.size(), size)
	}
	data := make([]byte, size)
	per := max(1, b.N/goroutines)
	var c floorCounters
	var (
		failMu sync.Mutex
		failed error
	)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				k := c.reserved.Add(1) - 1
				slot := k
				if slot >= slots { // only past the segment's end: no division on the usual path
					slot %= slots
				}
				off := start + int(slot)*n
				if _, err := l.writeRecords(seg, off, first+k, data, nil); err != nil {
					failMu.Lock()
					failed = err
					failMu.Unlock()
					return
				}
				c.publish.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	if got, want := c.publish.Load(), uint64(per*goroutines); got != want {
		b.Fatalf("published %d records, want %d", got, want)
	}
	b.ReportMetric(float64(per*goroutines)/elapsed.Seconds(), "appends/s")
}
