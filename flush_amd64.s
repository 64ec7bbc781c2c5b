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
