package wal

import "unsafe"

// The flush contract, written once here and implemented twice:
// flush_amd64.go with flush_amd64.s (build tag !purego) and
// flush_generic.go (every other architecture, and -tags purego on amd64).
//
//	flushRange(p, n) error
//		Starts write-back toward the persistence domain of every cache line
//		that overlaps [p, p+n). p points into a shared file mapping. On amd64
//		this is CLWB, CLFLUSHOPT or CLFLUSH per line (chosen once by CPUID):
//		the write-back is not complete until drain returns. The portable
//		version has no cache instructions, so it calls msync(MS_SYNC) on the
//		pages covering the range and is complete on return.
//
//	drain()
//		Waits until every flushRange issued before it by this thread has
//		reached the persistence domain (SFENCE on amd64; nothing on the
//		portable path, whose flushRange is already synchronous).
//
//	flushInstruction() string
//		Names what flushRange uses: "clwb", "clflushopt", "clflush" or "msync".
//
// A commit is any number of flushRange calls followed by exactly one drain.

// cacheLine is the write-back granule of flushRange on every supported CPU.
const cacheLine = 64

// lineSpan returns the first cache-line address and the number of lines
// that cover [p, p+n). n == 0 covers no line.
func lineSpan(p unsafe.Pointer, n uintptr) (start uintptr, lines uintptr) {
	if n == 0 {
		return uintptr(p) &^ (cacheLine - 1), 0
	}
	a := uintptr(p)
	start = a &^ (cacheLine - 1)
	end := (a + n + cacheLine - 1) &^ (cacheLine - 1)
	return start, (end - start) / cacheLine
}
