package wal

import (
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ntCandidates are the payload sizes calibrateNT compares the two ways
// of persisting at.
var ntCandidates = [...]int{64, 128, 256, 512, 1024, 2048, 4096}

// calibratedNT is calibrateNT's result for this CPU's default write-back
// instruction (defaultFlush), measured once, on first need.
var calibratedNT = sync.OnceValue(func() int { return calibrateNT(defaultFlush()) })

// calibrateNT measures, on this CPU, the record size from which
// non-temporal stores and a fence persist a record faster than plain
// stores, a write-back of its lines (flush) and a fence: the threshold
// for CPUs whose crossover this project has not measured (every vendor
// but AMD, where non-temporal stores won at every size: see
// defaultNTThreshold), and for WAL_NT_THRESHOLD=calibrate. For each of
// ntCandidates, the fastest of 3 runs of 32 records at consecutive
// offsets of an anonymous mapping, each way. It returns the smallest
// candidate from which non-temporal stores win at every larger one too
// (0 if they win at the smallest), or -1 if they never win. It takes
// about a millisecond, and -1 where it cannot map memory or the build
// has no non-temporal stores.
func calibrateNT(flush int) int {
	if !ntSupported() || flush == flushMsync {
		return -1
	}
	const recs, runs = 32, 3
	size := recs * recSize(ntCandidates[len(ntCandidates)-1])
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return -1
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = 1 // fault every page in before timing
	}
	h := hw{flush: flush}
	src := make([]byte, recSize(ntCandidates[len(ntCandidates)-1]))
	ntWins := make([]bool, len(ntCandidates))
	for c, n := range ntCandidates {
		rec := src[:recSize(n)]
		best := [2]time.Duration{1 << 62, 1 << 62} // write-back, non-temporal
		for r := 0; r < 2*runs; r++ {
			way := r & 1
			start := time.Now()
			for i := 0; i < recs; i++ {
				p := unsafe.Pointer(&mem[i*len(rec)])
				if way == 0 {
					copy(mem[i*len(rec):], rec)
					h.flushRange(p, uintptr(len(rec)))
				} else {
					storeNT(p, unsafe.Pointer(&rec[0]), uintptr(len(rec)))
				}
				drain()
			}
			best[way] = min(best[way], time.Since(start))
		}
		ntWins[c] = best[1] <= best[0]
	}
	threshold := -1
	for c := len(ntCandidates) - 1; c >= 0 && ntWins[c]; c-- {
		threshold = ntCandidates[c]
	}
	if threshold == ntCandidates[0] {
		threshold = 0
	}
	return threshold
}
