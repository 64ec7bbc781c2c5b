package wal

import (
	"math/bits"
	"unsafe"
)

// xxhash64 (seed 0), split so that the 32-byte stripes can be hashed in the
// same pass that copies them to the media (xxhStripesNT on amd64). The
// result equals github.com/cespare/xxhash/v2's Sum64; tests check it.

const (
	xxhP1 uint64 = 0x9E3779B185EBCA87
	xxhP2 uint64 = 0xC2B2AE3D27D4EB4F
	xxhP3 uint64 = 0x165667B19E3779F9
	xxhP4 uint64 = 0x85EBCA77C2B2AE63
	xxhP5 uint64 = 0x27D4EB2F165667C5
)

// emptySum is xxhash64 of no bytes.
var emptySum = xxhFinish(&[4]uint64{}, 0, nil)

// xxhPrimes is read by the assembly.
var xxhPrimes = [2]uint64{xxhP1, xxhP2}

func xxhRound(acc, input uint64) uint64 {
	acc += input * xxhP2
	acc = bits.RotateLeft64(acc, 31)
	return acc * xxhP1
}

func xxhMerge(acc, val uint64) uint64 {
	val = xxhRound(0, val)
	acc ^= val
	return acc*xxhP1 + xxhP4
}

// xxhInit returns the lanes' starting values for seed 0.
func xxhInit() [4]uint64 {
	p1, p2 := xxhP1, xxhP2 // wrapping arithmetic, as the algorithm wants
	return [4]uint64{p1 + p2, p2, 0, -p1}
}

// xxhStripes feeds the 32-byte stripes of b (len(b) a multiple of 32) to acc.
func xxhStripes(acc *[4]uint64, b []byte) {
	for ; len(b) >= 32; b = b[32:] {
		acc[0] = xxhRound(acc[0], le.Uint64(b[0:]))
		acc[1] = xxhRound(acc[1], le.Uint64(b[8:]))
		acc[2] = xxhRound(acc[2], le.Uint64(b[16:]))
		acc[3] = xxhRound(acc[3], le.Uint64(b[24:]))
	}
}

// xxhFinish completes the hash of total bytes whose whole stripes went
// into acc and whose last total%32 bytes are tail.
func xxhFinish(acc *[4]uint64, total int, tail []byte) uint64 {
	return xxhEnd(acc[0], acc[1], acc[2], acc[3], total, tail)
}

// xxhEnd is xxhFinish with the four lanes in registers.
func xxhEnd(a0, a1, a2, a3 uint64, total int, tail []byte) uint64 {
	var h uint64
	if total >= 32 {
		h = bits.RotateLeft64(a0, 1) + bits.RotateLeft64(a1, 7) +
			bits.RotateLeft64(a2, 12) + bits.RotateLeft64(a3, 18)
		h = xxhMerge(h, a0)
		h = xxhMerge(h, a1)
		h = xxhMerge(h, a2)
		h = xxhMerge(h, a3)
	} else {
		h = xxhP5
	}
	h += uint64(total)
	for ; len(tail) >= 8; tail = tail[8:] {
		h ^= xxhRound(0, le.Uint64(tail))
		h = bits.RotateLeft64(h, 27)*xxhP1 + xxhP4
	}
	if len(tail) >= 4 {
		h ^= uint64(le.Uint32(tail)) * xxhP1
		h = bits.RotateLeft64(h, 23)*xxhP2 + xxhP3
		tail = tail[4:]
	}
	for _, c := range tail {
		h ^= uint64(c) * xxhP5
		h = bits.RotateLeft64(h, 11) * xxhP1
	}
	return xxhAvalanche(h)
}

// xxhSum is xxhash64 (seed 0) of b with its lanes in registers: no
// store at all, so that an append can hash its payload while the
// previous append's stores drain (appendOne).
func xxhSum(b []byte) uint64 {
	p1, p2 := xxhP1, xxhP2 // wrapping arithmetic, as the algorithm wants
	a0, a1, a2, a3 := p1+p2, p2, uint64(0), -p1
	total := len(b)
	for ; len(b) >= 32; b = b[32:] {
		a0 = xxhRound(a0, le.Uint64(b[0:]))
		a1 = xxhRound(a1, le.Uint64(b[8:]))
		a2 = xxhRound(a2, le.Uint64(b[16:]))
		a3 = xxhRound(a3, le.Uint64(b[24:]))
	}
	return xxhEnd(a0, a1, a2, a3, total, b)
}

// xxhSum32 is xxhash64 (seed 0) of the 32 bytes that are w0..w3 in
// little-endian order: one stripe, no tail, so straight-line code without
// a buffer or a call into the general routine. The chain sum of every
// record header is one.
func xxhSum32(w0, w1, w2, w3 uint64) uint64 {
	// Four locals, not xxhInit's array, which the compiler keeps in
	// memory: stores on the append path, where each one counts (writeOne).
	p1, p2 := xxhP1, xxhP2 // wrapping arithmetic, as the algorithm wants
	a0 := xxhRound(p1+p2, w0)
	a1 := xxhRound(p2, w1)
	a2 := xxhRound(0, w2)
	a3 := xxhRound(-p1, w3)
	// The lanes merged as in xxhEnd, inline here: as a function they
	// would not inline (cost 166), and a call is stores.
	h := bits.RotateLeft64(a0, 1) + bits.RotateLeft64(a1, 7) +
		bits.RotateLeft64(a2, 12) + bits.RotateLeft64(a3, 18)
	h = xxhMerge(h, a0)
	h = xxhMerge(h, a1)
	h = xxhMerge(h, a2)
	h = xxhMerge(h, a3)
	return xxhAvalanche(h + 32)
}

// xxhAvalanche is the final mix of every xxhash64.
func xxhAvalanche(h uint64) uint64 {
	h ^= h >> 33
	h *= xxhP2
	h ^= h >> 29
	h *= xxhP3
	return h ^ h>>32
}

// hashStoreNT writes data to dst (8-byte aligned, inside a mapping) with
// non-temporal stores, its last partial word zero padded up to the 8-byte
// boundary, and returns xxhash64(data): the stripes are hashed in the same
// pass that stores them. Durable after drain; on the portable path it
// msyncs what it stored, and returns the msync's error.
func (h *hw) hashStoreNT(dst unsafe.Pointer, data []byte) (uint64, error) {
	acc := xxhInit()
	whole := len(data) &^ 31
	if whole > 0 {
		h.stripesNT(dst, data[:whole], &acc)
	}
	tail := data[whole:]
	if w := len(tail) &^ 7; w > 0 {
		storeNT(unsafe.Add(dst, whole), unsafe.Pointer(&tail[0]), uintptr(w))
	}
	if r := len(tail) & 7; r > 0 {
		var pad [8]byte
		copy(pad[:], tail[len(tail)-r:])
		storeNT(unsafe.Add(dst, len(data)-r), unsafe.Pointer(&pad), 8)
	}
	var err error
	if h.flush == flushMsync { // the portable build: plain stores, so msync
		err = msyncRange(dst, uintptr((len(data)+7)&^7))
	}
	return xxhFinish(&acc, len(data), tail), err
}
