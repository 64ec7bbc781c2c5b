//go:build !amd64 || purego

package wal

import (
	"sync/atomic"
	"unsafe"
)

// The portable path has no cache-line instructions: every flush is an
// msync of the pages (flushMsync), complete on return. Persistence is
// never skipped; an msync error reaches the caller.

// flushLines is never reached here (hw.flush is always flushMsync), but if it
// were it would still persist: it msyncs the lines' pages.
func flushLines(kind int, start, lines uintptr) {
	_ = msyncRange(unsafe.Add(unsafe.Pointer(nil), start), lines*cacheLine) //nolint:govet
}

func storeNT(dst, src unsafe.Pointer, n uintptr) {
	copy(unsafe.Slice((*byte)(dst), n), unsafe.Slice((*byte)(src), n))
}

func drain() {}

// storeRelease is an atomic store here: sequentially consistent, so
// nothing need pair it with a barrier.
func storeRelease(addr *atomic.Uint64, v uint64) { addr.Store(v) }

const plainStoreRelease = false

func defaultFlush() int            { return flushMsync }
func flushSupported(kind int) bool { return false }
func ntSupported() bool            { return false }
func ntStoresName(int) string      { return "" }
func cpuVendor() string            { return "" }
func defaultNTThreshold() int      { return -1 }

// stripesNT hashes and copies the stripes with plain stores; the caller's
// msync (flushRange) makes them durable.
func (h *hw) stripesNT(dst unsafe.Pointer, b []byte, acc *[4]uint64) {
	xxhStripes(acc, b)
	copy(unsafe.Slice((*byte)(dst), len(b)), b)
}
