package wal

import (
	"fmt"
	"runtime"
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
				benchFloor(b, size, g, orderNone, false)
			})
		}
	}
}

// BenchmarkAppendFloorReserve is BenchmarkAppendFloor with one shared word
// instead of two: the reservation's atomic add is all the goroutines
// share (each counts its own appends). Every design that gives each
// append its index from one counter shares at least that much, so with
// goroutines=2, appends/s bounds how far two cores scale such appends on
// this machine, whatever the log's publication and bookkeeping cost.
// clock=on reads the clock before and after each append, as
// BenchmarkAppendParallel does for its latencies, so that its rates can
// be set beside that benchmark's; clock=off beside BenchmarkAppend's.
func BenchmarkAppendFloorReserve(b *testing.B) {
	for _, size := range []int{64, 256} {
		for _, g := range []int{1, 2} {
			for _, clock := range []bool{false, true} {
				b.Run(fmt.Sprintf("size=%d/goroutines=%d/clock=%s", size, g, onOff(clock)), func(b *testing.B) {
					benchFloor(b, size, g, orderReserve, clock)
				})
			}
		}
	}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// BenchmarkAppendFloorOrdered is BenchmarkAppendFloor with the one
// ordering promise Append keeps on top: an append returns only once every
// earlier one is published, and publishes in index order. An append whose
// predecessor has not yet published waits for it, in one of two ways:
//
//   - order=spin: it re-reads the publication counter until its turn comes
//     (yielding the CPU at every read after the first thousand), and then
//     publishes with an atomic store;
//   - order=park: it waits on a sync.Cond, and each publication takes the
//     Cond's mutex and broadcasts.
//
// In both, each append publishes itself, so with park every handoff from
// one append to the next waits for a wake-up. The log's commit differs
// there: whoever completes the sequence publishes the appends that
// finished before their turn, and those park only until they are
// published. Set beside BenchmarkAppendFloor, it separates what in-order
// publication costs in itself from what a wake-up per handoff costs.
// order=spin/clock=on reads the clock around each append, as
// BenchmarkAppendParallel does, to be set beside that benchmark.
func BenchmarkAppendFloorOrdered(b *testing.B) {
	for _, size := range []int{64, 256} {
		for _, g := range []int{1, 2, 8} {
			for _, o := range []floorOrder{orderSpin, orderPark} {
				b.Run(fmt.Sprintf("size=%d/goroutines=%d/order=%s", size, g, o), func(b *testing.B) {
					benchFloor(b, size, g, o, false)
				})
			}
			// With the clock read around each append, as
			// BenchmarkAppendParallel reads it.
			b.Run(fmt.Sprintf("size=%d/goroutines=%d/order=%s/clock=on", size, g, orderSpin), func(b *testing.B) {
				benchFloor(b, size, g, orderSpin, true)
			})
		}
	}
}

// floorOrder is how benchFloor publishes.
type floorOrder int

const (
	orderNone    floorOrder = iota // an atomic add, in whatever order appends finish
	orderSpin                      // in index order, waiting by spinning
	orderPark                      // in index order, waiting on a sync.Cond
	orderReserve                   // not shared: each goroutine counts its own
)

func (o floorOrder) String() string {
	return [...]string{"none", "spin", "park", "reserve"}[o]
}

// floorCounters are the two shared words of BenchmarkAppendFloor and
// BenchmarkAppendFloorOrdered, on separate cache lines, as a lock-free log
// would keep its reservation and publication points.
type floorCounters struct {
	_        [64]byte
	reserved atomic.Uint64
	_        [56]byte
	publish  atomic.Uint64
	_        [56]byte
}

// benchFloor runs the floor; clock reads the clock before and after each
// append (the result is kept, so that the reads cannot be dropped).
func benchFloor(b *testing.B, size, goroutines int, order floorOrder, clock bool) {
	l := benchOpen(b)
	l.mu.Lock()
	l.fastOff() // the floor writes past the log's tail: keep appends off it
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
	var (
		pubMu   sync.Mutex // orderPark
		pubCond = sync.NewCond(&pubMu)
	)
	var lat [][]time.Duration // clock: as benchParallel keeps them
	if clock {
		lat = make([][]time.Duration, goroutines)
		for i := range lat {
			lat[i] = make([]time.Duration, per)
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	var wg sync.WaitGroup
	for gi := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			if clock {
				mine = lat[gi]
			}
			done := uint64(0) // orderReserve
			defer func() {
				if order == orderReserve {
					c.publish.Add(done)
				}
			}()
			for j := range per {
				var t0 time.Time
				if clock {
					t0 = time.Now()
				}
				k := c.reserved.Add(1) - 1
				slot := k
				if slot >= slots { // only past the segment's end: no division on the usual path
					slot %= slots
				}
				off := start + int(slot)*n
				_, err := l.writeRecords(seg, off, first+k, data, nil)
				if err != nil {
					failMu.Lock()
					failed = err
					failMu.Unlock()
				}
				switch order {
				case orderNone:
					c.publish.Add(1)
				case orderSpin:
					for i := 0; c.publish.Load() != k; i++ {
						if i >= 1000 {
							runtime.Gosched()
						}
					}
					c.publish.Store(k + 1)
				case orderPark:
					pubMu.Lock()
					for c.publish.Load() != k {
						pubCond.Wait()
					}
					c.publish.Store(k + 1)
					pubCond.Broadcast()
					pubMu.Unlock()
				case orderReserve:
					done++
				}
				if clock {
					mine[j] = time.Since(t0)
				}
				if err != nil { // published all the same, so that no later append waits for ever
					return
				}
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
