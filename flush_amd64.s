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

// func flushLines(kind int, start, lines uintptr)
TEXT ·flushLines(SB), NOSPLIT, $0-24
	MOVQ kind+0(FP), DX
	MOVQ start+8(FP), AX
	MOVQ lines+16(FP), CX
	TESTQ CX, CX
	JZ    done
	CMPQ  DX, $0
	JEQ   clwb
	CMPQ  DX, $1
	JEQ   clflushopt

clflush:
	CLFLUSH (AX)
	ADDQ  $64, AX
	DECQ  CX
	JNZ   clflush
	RET

clwb:
	CLWB  (AX)
	ADDQ  $64, AX
	DECQ  CX
	JNZ   clwb
	RET

clflushopt:
	CLFLUSHOPT (AX)
	ADDQ  $64, AX
	DECQ  CX
	JNZ   clflushopt

done:
	RET

// func storeNT(dst, src unsafe.Pointer, n uintptr)
TEXT ·storeNT(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

	// Unaligned head: plain byte stores up to an 8-byte boundary of dst.
head:
	TESTQ CX, CX
	JZ    done
	TESTQ $7, DI
	JZ    aligned
	MOVB  (SI), AX
	MOVB  AX, (DI)
	INCQ  SI
	INCQ  DI
	DECQ  CX
	JMP   head

aligned:
	CMPQ  CX, $160
	JB    words
	CMPB  ·hasAVX2(SB), $0
	JEQ   words

	// Words up to a 32-byte boundary of dst (at most three).
align32:
	TESTQ $31, DI
	JZ    vec
	MOVQ  (SI), AX
	MOVNTIQ AX, (DI)
	ADDQ  $8, SI
	ADDQ  $8, DI
	SUBQ  $8, CX
	JMP   align32

	// 128 bytes a round: unaligned loads, aligned non-temporal stores.
vec:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VMOVNTDQ Y0, (DI)
	VMOVNTDQ Y1, 32(DI)
	VMOVNTDQ Y2, 64(DI)
	VMOVNTDQ Y3, 96(DI)
	ADDQ  $128, SI
	ADDQ  $128, DI
	SUBQ  $128, CX
	CMPQ  CX, $128
	JAE   vec
	VZEROUPPER

words:
	CMPQ  CX, $8
	JB    tail
	MOVQ  (SI), AX
	MOVNTIQ AX, (DI)
	ADDQ  $8, SI
	ADDQ  $8, DI
	SUBQ  $8, CX
	JMP   words

	// Unaligned tail: plain byte stores.
tail:
	TESTQ CX, CX
	JZ    done
	MOVB  (SI), AX
	MOVB  AX, (DI)
	INCQ  SI
	INCQ  DI
	DECQ  CX
	JMP   tail

done:
	RET

// func sfence()
TEXT ·sfence(SB), NOSPLIT, $0-0
	SFENCE
	RET

// func xxhStripesNT(dst, src unsafe.Pointer, n uintptr, acc *[4]uint64)
//
// For each 32-byte stripe of src[:n] (n a multiple of 32): stores its four
// words to dst with MOVNTI and feeds them to the four xxhash64 lanes in
// acc, in the same pass. dst is 8-byte aligned.
TEXT ·xxhStripesNT(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ acc+24(FP), DX
	MOVQ 0(DX), R8
	MOVQ 8(DX), R9
	MOVQ 16(DX), R10
	MOVQ 24(DX), R11
	MOVQ ·xxhPrimes+0(SB), R12
	MOVQ ·xxhPrimes+8(SB), R13
	SHRQ $5, CX
	JZ   xxhdone
	CMPB ·hasAVX2(SB), $0
	JEQ  xxhloop
	TESTQ $31, DI
	JNZ  xxhloop

	// dst is 32-byte aligned: one 32-byte non-temporal store per stripe.
xxhvec:
	VMOVDQU (SI), Y0
	VMOVNTDQ Y0, (DI)
	MOVQ    0(SI), AX
	IMULQ   R13, AX
	ADDQ    AX, R8
	ROLQ    $31, R8
	IMULQ   R12, R8
	MOVQ    8(SI), AX
	IMULQ   R13, AX
	ADDQ    AX, R9
	ROLQ    $31, R9
	IMULQ   R12, R9
	MOVQ    16(SI), AX
	IMULQ   R13, AX
	ADDQ    AX, R10
	ROLQ    $31, R10
	IMULQ   R12, R10
	MOVQ    24(SI), AX
	IMULQ   R13, AX
	ADDQ    AX, R11
	ROLQ    $31, R11
	IMULQ   R12, R11
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  xxhvec
	VZEROUPPER
	JMP  xxhdone

	// dst is 8-byte aligned: four MOVNTI per stripe.
xxhloop:
	MOVQ    0(SI), AX
	MOVNTIQ AX, 0(DI)
	IMULQ   R13, AX
	ADDQ    AX, R8
	ROLQ    $31, R8
	IMULQ   R12, R8

	MOVQ    8(SI), AX
	MOVNTIQ AX, 8(DI)
	IMULQ   R13, AX
	ADDQ    AX, R9
	ROLQ    $31, R9
	IMULQ   R12, R9

	MOVQ    16(SI), AX
	MOVNTIQ AX, 16(DI)
	IMULQ   R13, AX
	ADDQ    AX, R10
	ROLQ    $31, R10
	IMULQ   R12, R10

	MOVQ    24(SI), AX
	MOVNTIQ AX, 24(DI)
	IMULQ   R13, AX
	ADDQ    AX, R11
	ROLQ    $31, R11
	IMULQ   R12, R11

	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  xxhloop

xxhdone:
	MOVQ R8, 0(DX)
	MOVQ R9, 8(DX)
	MOVQ R10, 16(DX)
	MOVQ R11, 24(DX)
	RET

// func storeRelease(addr *atomic.Uint64, v uint64)
//
// A plain MOV: x86 makes it visible after every earlier store and does
// not wait for any of them to complete (see the contract in flush.go).
TEXT ·storeRelease(SB), NOSPLIT, $0-16
	MOVQ addr+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, 0(AX)
	RET
