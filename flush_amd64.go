//go:build !purego

package wal

import "unsafe"

// Flush instructions, in order of preference.
const (
	flushCLWB = iota
	flushCLFLUSHOPT
	flushCLFLUSH
)

// flushKind is chosen once at start-up by CPUID and never changed.
var flushKind = detectFlush()

// cpuid executes CPUID with the given leaf and subleaf.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// clwbLines, clflushoptLines and clflushLines write back n cache lines
// starting at the line-aligned address p. They do not fence.
func clwbLines(p uintptr, n uintptr)
func clflushoptLines(p uintptr, n uintptr)
func clflushLines(p uintptr, n uintptr)

// sfence orders every earlier store and CLWB/CLFLUSHOPT before later stores.
func sfence()

func detectFlush() int {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf >= 7 {
		_, ebx, _, _ := cpuid(7, 0)
		if ebx&(1<<24) != 0 {
			return flushCLWB
		}
		if ebx&(1<<23) != 0 {
			return flushCLFLUSHOPT
		}
	}
	// CLFLUSH (leaf 1 EDX bit 19) is part of SSE2, which every amd64 CPU has.
	return flushCLFLUSH
}

func flushRange(p unsafe.Pointer, n uintptr) error {
	start, lines := lineSpan(p, n)
	if lines == 0 {
		return nil
	}
	switch flushKind {
	case flushCLWB:
		clwbLines(start, lines)
	case flushCLFLUSHOPT:
		clflushoptLines(start, lines)
	default:
		clflushLines(start, lines)
	}
	return nil
}

func drain() { sfence() }

func flushInstruction() string {
	switch flushKind {
	case flushCLWB:
		return "clwb"
	case flushCLFLUSHOPT:
		return "clflushopt"
	default:
		return "clflush"
	}
}
