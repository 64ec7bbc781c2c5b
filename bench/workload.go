package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// kind is what a workload measures.
type kind int

const (
	kindAppend kind = iota // durable appends; ns per record
	kindOpen               // opening (recovering) the prebuilt log; ns per open
	kindRead               // sequential read of the prebuilt log; ns per record
)

// workload is one row group of the table.
type workload struct {
	Name      string // short id, used in raw.csv and the chart
	Title     string // heading in results.md
	Kind      kind
	Size      int // record size in bytes
	Appenders int // concurrent appending goroutines (threads for PMDK)
	Batch     int // records per append call
}

// bigRecord is the record size of the prebuilt log that the open and read
// workloads use.
const bigRecord = 1024

// workloads lists what the command measures, in table order.
func workloads(logBytes int64) []workload {
	size := fmtBytes(logBytes)
	return []workload{
		{Name: "append-64", Title: "Durable append, 64 B, 1 appender", Kind: kindAppend, Size: 64, Appenders: 1, Batch: 1},
		{Name: "append-256", Title: "Durable append, 256 B, 1 appender", Kind: kindAppend, Size: 256, Appenders: 1, Batch: 1},
		{Name: "append-4096", Title: "Durable append, 4096 B, 1 appender", Kind: kindAppend, Size: 4096, Appenders: 1, Batch: 1},
		{Name: "append-256-x2", Title: "Durable append, 256 B, 2 appenders", Kind: kindAppend, Size: 256, Appenders: 2, Batch: 1},
		{Name: "append-256-x8", Title: "Durable append, 256 B, 8 appenders", Kind: kindAppend, Size: 256, Appenders: 8, Batch: 1},
		{Name: "append-256-x16", Title: "Durable append, 256 B, 16 appenders", Kind: kindAppend, Size: 256, Appenders: 16, Batch: 1},
		{Name: "batch-64x64", Title: "Durable batch of 64 records of 64 B, 1 appender (ns and p99 per record / per batch)", Kind: kindAppend, Size: 64, Appenders: 1, Batch: 64},
		{Name: "open", Title: fmt.Sprintf("Open (recovery) of a %s log of %d B records", size, bigRecord), Kind: kindOpen, Size: bigRecord},
		{Name: "read-seq", Title: fmt.Sprintf("Sequential read of the %s log, %d B records", size, bigRecord), Kind: kindRead, Size: bigRecord},
	}
}

// fmtBytes renders n as GiB or MiB.
func fmtBytes(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// errUnsupported marks a (system, workload) pair that has no meaning, such
// as recovering the raw-memcpy floor, which keeps no log.
var errUnsupported = errors.New("not applicable")

// driver creates and opens one system's logs.
type driver interface {
	// create makes an empty log in the empty directory dir.
	create(dir string) (store, error)
	// open opens the existing log in dir, recovering it as the library
	// does after a restart.
	open(dir string) (store, error)
}

// store is one open log.
type store interface {
	// appendCalls makes n append calls of w.batch records of w.size bytes
	// from the calling goroutine, recording the latency of every
	// sampleEvery-th call in w.hist. It is called concurrently by several
	// workers in the multi-appender workloads.
	appendCalls(w *worker, n int) error
	// fill appends size-byte records until the log holds total bytes of
	// payload, as fast as the library allows (large batches).
	fill(total int64, size int) error
	// read reads records of w.size bytes sequentially from the start of the
	// log until deadline, wrapping around at the end, and returns how many
	// it read.
	read(w *worker, deadline time.Time) (int64, error)
	close() error
}

// sampleEvery is the stride of latency sampling: one call in sampleEvery is
// timed individually, or every call when calls take longer than
// slowCall, where the clock's cost does not matter and samples are few.
// Throughput (ns/op) is measured over the whole loop.
const (
	sampleEvery = 8
	slowCall    = 10 * time.Microsecond
)

// worker is one appending or reading goroutine's state.
type worker struct {
	size, batch int
	buf         []byte   // one record's payload
	bufs        [][]byte // batch views of buf
	hist        histogram
	calls       int64 // calls made, for sampling
	measure     bool  // record latencies (off during warm-up)
	every       int64 // time one call in every (sampleEvery, or 1 for slow calls)
}

func newWorker(size, batch int) *worker {
	w := &worker{size: size, batch: batch, buf: make([]byte, size), measure: true, every: sampleEvery}
	for i := range w.buf {
		w.buf[i] = byte('a' + i%26)
	}
	w.bufs = make([][]byte, batch)
	for i := range w.bufs {
		w.bufs[i] = w.buf
	}
	return w
}

// sampled reports whether the next call is to be timed, and counts it.
func (w *worker) sampled() bool {
	w.calls++
	return w.measure && w.calls%w.every == 0
}

// sample is one repetition's measurement of one cell.
type sample struct {
	nsPerOp float64 // per record (append, read) or per open
	ops     int64
	hist    histogram // per-call latency samples
}

// cellConfig bounds one cell's run.
type cellConfig struct {
	budget time.Duration // measured time per cell
	warmup time.Duration // unmeasured appends before it
	// settleMax bounds the wait, after a log is created, for the process
	// to go idle: background work of the open, such as this log preparing
	// its next segment, finishes before the clock starts.
	settleMax time.Duration
}

// settle waits until the process uses under 10% of one CPU over 20 ms, or
// max has passed.
func settle(max time.Duration) {
	const window = 20 * time.Millisecond
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		c0 := cpuTime()
		time.Sleep(window)
		if cpuTime()-c0 < window/10 {
			return
		}
	}
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Workers check the deadline between chunks of calls, sized to take
// between chunkMin and 2*chunkMin, so slow (fsync) calls do not overshoot
// the budget and fast ones do not spend their time reading the clock.
const (
	chunkMin = time.Millisecond
	chunkMax = 4096
)

// runAppend measures a fresh log in a new directory under base.
func runAppend(drv driver, base string, wl workload, cc cellConfig) (*sample, error) {
	dir, err := os.MkdirTemp(base, "cell-")
	if err != nil {
		return nil, fmt.Errorf("cell directory: %w", err)
	}
	defer os.RemoveAll(dir)
	st, err := drv.create(dir)
	if err != nil {
		return nil, err
	}
	settle(cc.settleMax)
	workers := make([]*worker, wl.Appenders)
	for i := range workers {
		workers[i] = newWorker(wl.Size, wl.Batch)
	}
	if cc.warmup > 0 {
		for _, w := range workers {
			w.measure = false
		}
		calls, d, err := appendFor(st, workers, cc.warmup)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		for _, w := range workers {
			w.measure = true
			if calls > 0 && d/time.Duration(calls) > slowCall/time.Duration(len(workers)) {
				w.every = 1
			}
		}
	}
	calls, elapsed, err := appendFor(st, workers, cc.budget)
	if cerr := st.close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	s := &sample{ops: calls * int64(wl.Batch)}
	s.nsPerOp = float64(elapsed.Nanoseconds()) / float64(s.ops)
	for _, w := range workers {
		s.hist.merge(&w.hist)
	}
	return s, nil
}

// appendFor runs the workers until d has passed and returns the calls made
// and the wall time they took.
func appendFor(st store, workers []*worker, d time.Duration) (int64, time.Duration, error) {
	var (
		total   atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		stop    atomic.Bool
	)
	start := time.Now()
	deadline := start.Add(d)
	for _, w := range workers {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			chunk := 1
			t := time.Now()
			for !stop.Load() {
				if err := st.appendCalls(w, chunk); err != nil {
					errOnce.Do(func() { first = err })
					stop.Store(true)
					return
				}
				total.Add(int64(chunk))
				now := time.Now()
				if !now.Before(deadline) {
					stop.Store(true)
				}
				switch d := now.Sub(t); {
				case d < chunkMin && chunk < chunkMax:
					chunk *= 2
				case d > 4*chunkMin && chunk > 1:
					chunk /= 2
				}
				t = now
			}
		}(w)
	}
	wg.Wait()
	return total.Load(), time.Since(start), first
}

// runOpenRead opens the prebuilt log in dir, timing the open when
// timeOpen, then reads it sequentially for the budget when doRead. It
// returns the samples of the two (nil for what was not asked).
func runOpenRead(drv driver, dir string, wl workload, timeOpen, doRead bool, cc cellConfig) (open, read *sample, err error) {
	t := time.Now()
	st, err := drv.open(dir)
	d := time.Since(t)
	if err != nil {
		return nil, nil, err
	}
	if timeOpen {
		open = &sample{ops: 1, nsPerOp: float64(d.Nanoseconds())}
		open.hist.record(d)
	}
	if doRead {
		w := newWorker(wl.Size, 1)
		start := time.Now()
		var n int64
		n, err = st.read(w, start.Add(cc.budget))
		elapsed := time.Since(start)
		if err == nil && n == 0 {
			err = errors.New("read no records")
		}
		if err == nil {
			read = &sample{ops: n, nsPerOp: float64(elapsed.Nanoseconds()) / float64(n), hist: w.hist}
		}
	}
	if cerr := st.close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return nil, nil, err
	}
	return open, read, nil
}
