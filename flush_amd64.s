//go:build !purego

#include "textflag.h"

// func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func clwbLines(p uintptr, n uintptr)
TEXT ·clwbLines(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	TESTQ CX, CX
	JZ   clwbdone
clwbloop:
	CLWB (AX)
	ADDQ $64, AX
	DECQ CX
	JNZ  clwbloop
clwbdone:
	RET

// func clflushoptLines(p uintptr, n uintptr)
TEXT ·clflushoptLines(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	TESTQ CX, CX
	JZ   optdone
optloop:
	CLFLUSHOPT (AX)
	ADDQ $64, AX
	DECQ CX
	JNZ  optloop
optdone:
	RET

// func clflushLines(p uintptr, n uintptr)
TEXT ·clflushLines(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	TESTQ CX, CX
	JZ   cfdone
cfloop:
	CLFLUSH (AX)
	ADDQ $64, AX
	DECQ CX
	JNZ  cfloop
cfdone:
	RET

// func sfence()
TEXT ·sfence(SB), NOSPLIT, $0-0
	SFENCE
	RET
