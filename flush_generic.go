//go:build !amd64 || purego

package wal

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pageSize = uintptr(os.Getpagesize())

// flushRange has no cache-line instructions to use here, so it makes the
// range durable at once with msync(MS_SYNC) of the pages that cover it.
// Persistence is never skipped: an msync error is returned to the caller.
func flushRange(p unsafe.Pointer, n uintptr) error {
	if n == 0 {
		return nil
	}
	a := uintptr(p)
	start := a &^ (pageSize - 1)
	end := (a + n + pageSize - 1) &^ (pageSize - 1)
	b := unsafe.Slice((*byte)(unsafe.Pointer(start)), end-start) //nolint:govet // address inside a live mapping
	return unix.Msync(b, unix.MS_SYNC)
}

func drain() {}

func flushInstruction() string { return "msync" }
