//go:build !purego

package wal

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// cpuid executes CPUID with the given leaf and subleaf.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// flushLines writes back lines cache lines from the line-aligned address
// start with CLWB (kind 0), CLFLUSHOPT (1) or CLFLUSH (2). It does not fence.
func flushLines(kind int, start, lines uintptr)

// storeNT copies n bytes from src to dst: MOVNTI for whole aligned words of
// dst, 32-byte VMOVNTDQ for aligned runs when hasAVX2, plain byte stores
// for an unaligned head and tail. It does not fence.
//
//go:noescape
func storeNT(dst, src unsafe.Pointer, n uintptr)

// sfence orders every earlier store, non-temporal store and CLWB/CLFLUSHOPT
// before any later store: once it retires they are in the persistence domain.
func sfence()

func drain() { sfence() }

// storeRelease stores v at addr with a plain MOV (flush_amd64.s): see the
// contract in flush.go.
//
//go:noescape
func storeRelease(addr *atomic.Uint64, v uint64)

// plainStoreRelease reports that storeRelease is a plain store, which
// later loads of the same thread may pass.
const plainStoreRelease = true

// hasAVX2 is read by storeNT; set once at start-up.
var hasAVX2 = cpu.X86.HasAVX2

// cpuFeatures holds the CPUID bits this file selects on, read once.
var cpuFeatures = func() (f struct{ clwb, clflushopt, clflush bool }) {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf >= 1 {
		_, _, _, edx := cpuid(1, 0)
		f.clflush = edx&(1<<19) != 0
	}
	if maxLeaf >= 7 {
		_, ebx, _, _ := cpuid(7, 0)
		f.clwb = ebx&(1<<24) != 0
		f.clflushopt = ebx&(1<<23) != 0
	}
	return f
}()

// defaultFlush is pickFlush of this CPU's CPUID bits.
func defaultFlush() int {
	return pickFlush(cpuFeatures.clwb, cpuFeatures.clflushopt, cpuFeatures.clflush)
}

func flushSupported(kind int) bool {
	switch kind {
	case flushCLWB:
		return cpuFeatures.clwb
	case flushCLFLUSHOPT:
		return cpuFeatures.clflushopt
	case flushCLFLUSH:
		return cpuFeatures.clflush
	}
	return false
}

func ntSupported() bool { return true }

func ntStoresName(ntMin int) string {
	switch {
	case ntMin < 0:
		return ""
	case hasAVX2:
		return "vmovntdq"
	}
	return "movnti"
}

// cpuVendor returns the CPUID vendor string, such as "AuthenticAMD".
func cpuVendor() string {
	_, b, c, d := cpuid(0, 0)
	var v [12]byte
	for i := 0; i < 4; i++ {
		v[i], v[4+i], v[8+i] = byte(b>>(8*i)), byte(d>>(8*i)), byte(c>>(8*i))
	}
	return string(v[:])
}

// defaultNTThreshold is the payload size from which non-temporal stores
// beat stores plus write-back. On AMD it was measured here
// (BenchmarkBarePersist, see README): they win at every size. Other
// vendors' CPUs are measured at start-up (calibrateNT).
func defaultNTThreshold() int {
	if cpuVendor() == "AuthenticAMD" {
		return 0
	}
	return calibratedNT()
}

// xxhStripesNT stores and hashes the 32-byte stripes of src[:n] in one
// pass (see xxh.go).
//
//go:noescape
func xxhStripesNT(dst, src unsafe.Pointer, n uintptr, acc *[4]uint64)

func (h *hw) stripesNT(dst unsafe.Pointer, b []byte, acc *[4]uint64) {
	xxhStripesNT(dst, unsafe.Pointer(&b[0]), uintptr(len(b)), acc)
}
