package wal

import (
	"fmt"
	"os"
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

func benchOpen(b *testing.B) *Log {
	b.Helper()
	l, err := Open(benchDir(b), &Options{Persist: PersistCacheFlush})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkAppend measures one durable Append per operation.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			l := benchOpen(b)
			data := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := l.Append(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendBatch measures one durable AppendBatch of 64 records of 64
// bytes per operation; ns/record is reported too.
func BenchmarkAppendBatch(b *testing.B) {
	const n, size = 64, 64
	l := benchOpen(b)
	batch := make([][]byte, n)
	for i := range batch {
		batch[i] = make([]byte, size)
	}
	b.SetBytes(n * size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

// BenchmarkBarePersist is the hardware floor for the same bytes an Append
// of 64 B moves (a 32-byte header and the payload): store them into a
// mapping of a /dev/shm file, flush the lines, one fence. No log logic.
func BenchmarkBarePersist(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			f, err := os.CreateTemp(benchDir(b), "bare")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			const region = 64 << 20
			if err := f.Truncate(region); err != nil {
				b.Fatal(err)
			}
			mem, err := unix.Mmap(int(f.Fd()), 0, region, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Munmap(mem)
			rec := make([]byte, recSize(size))
			h := hw{flush: defaultFlush()}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			off := 0
			b.ResetTimer()
			for b.Loop() {
				if off+len(rec) > region {
					off = 0
				}
				copy(mem[off:], rec)
				h.flushRange(unsafe.Pointer(&mem[off]), uintptr(len(rec)))
				drain()
				off += len(rec)
			}
		})
	}
}
