package wal

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkIterate reads 4 KiB records sequentially without copying,
// verifying each checksum (payload bytes/s is the figure of merit).
func BenchmarkIterate(b *testing.B) {
	l := benchOpenSize(b, defaultSegmentSize)
	const n, size = 20000, 4096
	data := make([]byte, size)
	for i := 0; i < n; i++ {
		if _, err := l.Append(data); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	it := l.Records(1)
	sum := 0
	for b.Loop() {
		for _, rec := range it.All() {
			sum += len(rec)
			break
		}
		if it.next > n {
			it = l.Records(1)
		}
	}
	if err := it.Err(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReadRandom reads 256-byte records at random indexes (a copy
// each, as Read returns).
func BenchmarkReadRandom(b *testing.B) {
	const n, size = 200000, 256
	l := benchRecords(b, n, size)
	rng := rand.New(rand.NewPCG(1, 2))
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Read(1 + rng.Uint64N(n)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadRandomFloor is the floor under BenchmarkReadRandom: the
// same log, random indexes, and only the first word of each record's
// header loaded from the mapping (no lock, no checksum, no copy). Each
// index depends on the word loaded before (as each Read waits for the one
// before it to finish), so the memory and TLB misses do not overlap.
func BenchmarkReadRandomFloor(b *testing.B) {
	const n, size = 200000, 256
	l := benchRecords(b, n, size)
	seg := l.segs[0]
	rng := rand.New(rand.NewPCG(1, 2))
	var sink uint64
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		i := (rng.Uint64() ^ sink&1) % n
		sink += le.Uint64(seg.mem[seg.offs.At(int(i)):])
	}
	if sink == 1 {
		b.Log(sink)
	}
}

// BenchmarkOpen recovers a log of 1 GiB of 256-byte records: a scan that
// verifies every checksum.
func BenchmarkOpen(b *testing.B) {
	dir := benchDir(b)
	b.Setenv("WAL_PERSIST", "")
	opts := &Options{Persist: PersistCacheFlush}
	l, err := Open(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	data := make([][]byte, 64)
	for i := range data {
		data[i] = make([]byte, 256)
	}
	for l.Stats().BytesUsed+int64(len(l.segs)-1)*defaultSegmentSize < 1<<30 {
		if _, err := l.AppendBatch(data); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	b.SetBytes(1 << 30)
	b.ResetTimer()
	for b.Loop() {
		l, err := Open(dir, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		benchSettle(l)
		l.Close()
		b.StartTimer()
	}
}

// benchRecords returns a log of n records of size bytes in one segment.
func benchRecords(b *testing.B, n, size int) *Log {
	b.Helper()
	l := benchOpenSize(b, defaultSegmentSize)
	data := make([]byte, size)
	for range n {
		if _, err := l.Append(data); err != nil {
			b.Fatal(err)
		}
	}
	return l
}
