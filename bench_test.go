package wal

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// benchDir returns a fresh directory on /dev/shm (tmpfs), where the
// persistent-memory path runs with PersistCacheFlush, or under the test's
// temporary directory when /dev/shm is missing.
func benchDir(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-bench-")
	if err != nil {
		return b.TempDir()
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// benchSegment is the segment size of the per-append benchmarks: large
// enough that b.N appends at -benchtime 200000x land in one segment
// prepared before the timer starts, so they measure the append path and
// not the preparation of fresh segments (BenchmarkAppendSustained does).
const benchSegment = 1 << 30

func benchOpen(b *testing.B) *Log {
	b.Helper()
	return benchOpenSize(b, benchSegment)
}

func benchOpenSize(b *testing.B, segSize int64) *Log {
	b.Helper()
	b.Setenv("WAL_PERSIST", "")
	l, err := Open(benchDir(b), &Options{Persist: PersistCacheFlush, SegmentSize: segSize})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	benchSettle(l)
	return l
}

// benchSettle waits until the log's next segment is prepared, so that the
// background preparation does not compete with the timed loop.
func benchSettle(l *Log) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.prepCh != nil {
		res := <-l.prepCh
		l.prepCh = nil
		if res.err == nil {
			l.spare = res.seg
		}
	}
}

// BenchmarkAppend measures one durable Append per operation.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			benchAppends(b, benchOpen(b), size)
		})
	}
}

// BenchmarkAppendSustained appends with the default 64 MiB segments, for
// as long as the benchmark runs: it includes preparing every new segment
// in the background (allocating and touching fresh memory), which bounds
// sustained throughput for large records.
func BenchmarkAppendSustained(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			benchAppends(b, benchOpenSize(b, defaultSegmentSize), size)
		})
	}
}

// benchAppends times single Appends of size bytes.
func benchAppends(b *testing.B, l *Log, size int) {
	data := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendBatch measures one durable AppendBatch of 64 records of 64
// bytes per operation; ns/record is reported too.
func BenchmarkAppendBatch(b *testing.B) {
	benchBatch(b, 64, 64)
}

// BenchmarkAppendBatchSmall measures AppendBatch of a few 64 B records:
// what a batch costs for each record it adds to a single Append's, and
// the least a design that combines concurrent appends into one batch (one
// appender writing the others' records, with one fence) would spend
// writing them, before any cost of handing appends between goroutines.
func BenchmarkAppendBatchSmall(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			benchBatch(b, n, 64)
		})
	}
}

// benchBatch measures AppendBatch of n records of size bytes, and reports
// ns/record.
func benchBatch(b *testing.B, n, size int) {
	l := benchOpen(b)
	batch := make([][]byte, n)
	for i := range batch {
		batch[i] = make([]byte, size)
	}
	b.SetBytes(int64(n * size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

// BenchmarkBarePersist is the hardware floor for the bytes an Append of
// size bytes moves (a 32-byte header and the payload, 8-byte aligned, at
// consecutive offsets): stored into a prefaulted mapping of a /dev/shm
// file and made durable by one SFENCE, with plain stores plus CLWB (clwb)
// or non-temporal stores (nt). No log logic: no checksum, no index. The
// mapping is 64 MiB, reused from its start when full, so large records
// find it warm: the fastest case, which is what a floor should be.
func BenchmarkBarePersist(b *testing.B) {
	for _, kind := range []string{"clwb", "nt"} {
		for _, size := range []int{64, 256, 4096} {
			b.Run(fmt.Sprintf("%s/size=%d", kind, size), func(b *testing.B) {
				mem := benchMapping(b, 64<<20)
				rec := make([]byte, recSize(size))
				h := hw{flush: defaultFlush(), ntMin: 0}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				off := 0
				b.ResetTimer()
				for b.Loop() {
					if off+len(rec) > len(mem) {
						off = 0
					}
					if kind == "nt" {
						storeNT(unsafe.Pointer(&mem[off]), unsafe.Pointer(&rec[0]), uintptr(len(rec)))
					} else {
						copy(mem[off:], rec)
						h.flushRange(unsafe.Pointer(&mem[off]), uintptr(len(rec)))
					}
					drain()
					off += len(rec)
				}
			})
		}
	}
}

// BenchmarkRecordPersist is an append's data pass alone: the record
// written as writeRecords writes it at this CPU's threshold (the payload
// hashed in the pass that stores it non-temporally, then the header
// checksummed and stored non-temporally) and one SFENCE, at consecutive
// record offsets of a mapping as large as the Append benchmarks' segment,
// prefaulted the same way. With -benchtime 200000x nothing is written
// twice, so it sees the memory an Append sees. Beside BenchmarkAppend it
// separates the cost of checksumming and moving the bytes from the log's
// own work (reservation, publication, locks).
func BenchmarkRecordPersist(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			mem := benchMapping(b, benchSegment)
			data := make([]byte, size)
			h := hw{flush: defaultFlush(), ntMin: 0}
			n := recSize(size)
			var hdr [recHeaderSize]byte
			b.SetBytes(int64(size))
			b.ReportAllocs()
			off := segHeaderSize
			b.ResetTimer()
			for i := uint64(1); b.Loop(); i++ {
				if off+n > len(mem) {
					off = segHeaderSize
				}
				ps, _ := h.hashStoreNT(unsafe.Pointer(&mem[off+recHeaderSize]), data)
				encodeRecHeaderSum(hdr[:], 7, i, size, 0, 0, ps)
				h.copyNT(unsafe.Pointer(&mem[off]), unsafe.Pointer(&hdr[0]), recHeaderSize)
				drain()
				off += n
			}
		})
	}
}

// BenchmarkSyncFloor is the least an append's concurrency control can
// cost on this CPU, uncontended: one atomic add (the cheapest way to hand
// out an index) and one sync.Mutex lock and unlock. Set beside
// BenchmarkRecordPersist and BenchmarkAppend, it bounds what any
// reservation and publication scheme adds to the data pass.
func BenchmarkSyncFloor(b *testing.B) {
	b.Run("atomic-add", func(b *testing.B) {
		var n atomic.Uint64
		b.ReportAllocs()
		for b.Loop() {
			n.Add(1)
		}
	})
	b.Run("mutex-pair", func(b *testing.B) {
		var mu sync.Mutex
		b.ReportAllocs()
		for b.Loop() {
			mu.Lock()
			mu.Unlock() // an empty critical section: the pair is what is measured
		}
	})
}

// benchMapping maps a fresh /dev/shm file of size bytes, shared and
// prefaulted, with every page touched, as segment preparation does.
func benchMapping(b *testing.B, size int) []byte {
	b.Helper()
	f, err := os.CreateTemp(benchDir(b), "bare")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(size)); err != nil {
		b.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Munmap(mem) })
	clear(mem)
	return mem
}

// BenchmarkRecordChecksum is the cost of a record's checksum alone: the
// payload's xxhash64 and the header's, as encodeRecHeader computes them,
// on bytes already in the CPU cache. Set beside BenchmarkBarePersist, it
// shows how much of an append's time above the floor the format itself
// asks for.
func BenchmarkRecordChecksum(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			data := make([]byte, size)
			var hdr [recHeaderSize]byte
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for i := uint64(0); b.Loop(); i++ {
				encodeRecHeader(hdr[:], 7, i, data, 0, 0)
			}
		})
	}
}
