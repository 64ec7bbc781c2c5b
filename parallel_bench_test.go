package wal

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppendParallel measures total append throughput and per-append
// latency with several goroutines appending at once, on /dev/shm with
// PersistCacheFlush. ns/op is wall time per append across all goroutines;
// appends/s, and the latency percentiles p50, p99 and p99.9 of single
// calls, are reported as extra metrics.
func BenchmarkAppendParallel(b *testing.B) {
	for _, size := range []int{64, 256} {
		for _, g := range []int{1, 2, 8} {
			b.Run(fmt.Sprintf("size=%d/goroutines=%d", size, g), func(b *testing.B) {
				benchParallel(b, benchOpen(b), size, g)
			})
		}
	}
}

// BenchmarkAppendParallelMsync is the same on the ext4 disk (the test's
// temporary directory) with PersistMsync, where concurrent appenders share
// msyncs (group commit).
func BenchmarkAppendParallelMsync(b *testing.B) {
	for _, g := range []int{1, 16} {
		b.Run(fmt.Sprintf("size=256/goroutines=%d", g), func(b *testing.B) {
			b.Setenv("WAL_PERSIST", "")
			l, err := Open(b.TempDir(), &Options{Persist: PersistMsync, SegmentSize: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			benchSettle(l)
			benchParallel(b, l, 256, g)
		})
	}
}

func benchParallel(b *testing.B, l *Log, size, goroutines int) {
	per := max(1, b.N/goroutines)
	lat := make([][]time.Duration, goroutines)
	for i := range lat {
		lat[i] = make([]time.Duration, per)
	}
	data := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < goroutines; i++ {
		wg.Add(1)
		go func(mine []time.Duration) {
			defer wg.Done()
			for j := range mine {
				t0 := time.Now()
				if _, err := l.Append(data); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				mine[j] = time.Since(t0)
			}
		}(lat[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "appends/s")
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
	b.ReportMetric(pct(0.999), "p99.9-ns")
}
