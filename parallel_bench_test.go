package wal

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkAppendParallel measures total append throughput and per-append
// latency with several goroutines appending at once, on /dev/shm with
// PersistCacheFlush. ns/op is wall time per append across all goroutines;
// appends/s, the latency percentiles p50, p99 and p99.9 of single calls,
// and cpu-ns/op, the CPU time the process used per append (user and
// system, from getrusage, so it includes the garbage collector, the
// runtime's idle spinning and any other goroutine), are reported as extra
// metrics. cpu-ns/op times appends/s is how many CPUs were busy on
// average: near 1 where appenders do not run side by side. With msync,
// time blocked in the sync is not CPU time and does not count.
func BenchmarkAppendParallel(b *testing.B) {
	for _, size := range []int{64, 256} {
		for _, g := range []int{1, 2, 8} {
			b.Run(fmt.Sprintf("size=%d/goroutines=%d", size, g), func(b *testing.B) {
				benchParallel(b, benchOpen(b), size, g)
			})
		}
	}
	// More processors than CPUs (GOMAXPROCS set above the CPU count by
	// the program or the GOMAXPROCS variable): the gate's slots follow the
	// CPUs (fastSlots). The case sets GOMAXPROCS itself, whatever -cpu
	// says.
	b.Run("size=64/goroutines=8/procs=4xCPU", func(b *testing.B) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4 * runtime.NumCPU()))
		benchParallel(b, benchOpen(b), 64, 8)
	})
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
	before := l.Stats()
	var ru0, ru1 unix.Rusage
	b.ResetTimer()
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru0); err != nil {
		b.Fatal(err)
	}
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
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru1); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "appends/s")
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
	b.ReportMetric(pct(0.999), "p99.9-ns")
	b.ReportMetric(float64(cpu)/float64(len(all)), "cpu-ns/op")
	if after := l.Stats(); after.Syncs > before.Syncs {
		// Group commit at work: appends covered by one msync.
		b.ReportMetric(float64(after.Appends-before.Appends)/float64(after.Syncs-before.Syncs), "appends/sync")
	}
}

// BenchmarkCacheLineHandoff measures what one cache line costs to move
// between two cores: two goroutines take turns incrementing one counter,
// each spinning until the other has moved it. ns/op is one one-way
// handoff. Appends that share a log share its index, so when goroutines
// on two cores take turns, each append waits at least this long for the
// line; it bounds how far appends on one log can scale (see the README).
func BenchmarkCacheLineHandoff(b *testing.B) {
	var x atomic.Uint64
	n := uint64(b.N) &^ 1
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan struct{})
	go func() {
		for i := uint64(1); i < n; i += 2 {
			for x.Load() != i {
			}
			x.Store(i + 1)
		}
		close(done)
	}()
	for i := uint64(0); i < n; i += 2 {
		for x.Load() != i {
		}
		x.Store(i + 1)
	}
	<-done
}

// BenchmarkAppendIndependent runs one appender on each of g logs, which
// share nothing: the scaling that two cores give appends when no cache
// line moves between them, to set beside BenchmarkAppendParallel's one
// shared log. ns/op is wall time per append across all logs.
func BenchmarkAppendIndependent(b *testing.B) {
	for _, size := range []int{64, 256} {
		for _, g := range []int{1, 2} {
			b.Run(fmt.Sprintf("size=%d/logs=%d", size, g), func(b *testing.B) {
				logs := make([]*Log, g)
				for i := range logs {
					logs[i] = benchOpen(b)
				}
				data := make([]byte, size)
				per := max(1, b.N/g)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for _, l := range logs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := 0; j < per; j++ {
							if _, err := l.Append(data); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(per*g)/time.Since(start).Seconds(), "appends/s")
			})
		}
	}
}

// BenchmarkAppendTailed measures appends of 64 B on /dev/shm with
// PersistCacheFlush while one or three Tailers follow them: ns/op is
// until every Tailer has returned every record, appends/s the appender's
// own rate. The Tailers catch up and wait over and over, so this is where
// their waiting costs the appender something (with WAL_PUBLISH=store, a
// membarrier by the first Tailer to wait after each wake-up).
func BenchmarkAppendTailed(b *testing.B) {
	for _, tailers := range []int{1, 3} {
		b.Run(fmt.Sprintf("tailers=%d", tailers), func(b *testing.B) {
			l := benchOpen(b)
			data := make([]byte, 64)
			done := make(chan error, tailers)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for range tailers {
				tl := l.Tail(1)
				go func() {
					var buf []byte
					for i := 1; i <= b.N; i++ {
						got, rec, err := tl.Next(context.Background(), buf)
						if err != nil || got != uint64(i) {
							done <- fmt.Errorf("Next = %d, %v; want %d", got, err, i)
							return
						}
						buf = rec
					}
					done <- nil
				}()
			}
			start := time.Now()
			for i := 1; i <= b.N; i++ {
				if _, err := l.Append(data); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			for range tailers {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
		})
	}
}
