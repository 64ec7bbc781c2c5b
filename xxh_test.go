package wal

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// The split xxhash64 (stripes, then finish), xxhSum, and the pass that
// hashes while it stores, must equal xxhash.Sum64 and copy() for every length and
// alignment.
func TestXXHSplitMatchesSum64(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	src := make([]byte, 9000)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	mem := flushMapping(t, 16384)
	h := hw{flush: defaultFlush(), ntMin: 0}
	check := func(n, sa int) {
		for _, da := range []int{8, 16, 24, 32} { // records' payloads are 8-byte aligned; 32 takes the vector path
			checkAt(t, h, mem, src, n, sa, da)
		}
	}
	for n := 0; n <= 600; n++ {
		check(n, n%64)
	}
	for i := 0; i < 2000; i++ {
		check(rng.IntN(8193), rng.IntN(64))
	}
}

func checkAt(t *testing.T, h hw, mem, src []byte, n, sa, da int) {
	t.Helper()
	{
		data := src[sa : sa+n]
		acc := xxhInit()
		xxhStripes(&acc, data[:n&^31])
		if got, want := xxhFinish(&acc, n, data[n&^31:]), xxhash.Sum64(data); got != want {
			t.Fatalf("n=%d: split hash %x, Sum64 %x", n, got, want)
		}
		if got, want := xxhSum(data), xxhash.Sum64(data); got != want {
			t.Fatalf("n=%d: xxhSum %x, Sum64 %x", n, got, want)
		}
		for i := range mem[:n+64] {
			mem[i] = 0xEE
		}
		dst := unsafe.Pointer(&mem[da])
		got, err := h.hashStoreNT(dst, data)
		if err != nil {
			t.Fatal(err)
		}
		drain()
		if want := xxhash.Sum64(data); got != want {
			t.Fatalf("n=%d src align %d: hashStoreNT %x, Sum64 %x", n, sa, got, want)
		}
		if !bytes.Equal(mem[da:da+n], data) {
			t.Fatalf("n=%d src align %d: stored bytes differ", n, sa)
		}
		for i := da + n; i < da+(n+7)&^7; i++ {
			if mem[i] != 0 {
				t.Fatalf("n=%d: padding byte %d is %x, want 0", n, i, mem[i])
			}
		}
		if mem[da+(n+7)&^7] != 0xEE || mem[da-1] != 0xEE {
			t.Fatalf("n=%d: wrote outside the record", n)
		}
	}
}

// xxhSum32, the header chain's hash, must equal xxhash.Sum64 of the same 32
// bytes, for random words and for the edge values.
func TestXXHSum32MatchesSum64(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	words := func(w [4]uint64) {
		t.Helper()
		var b [32]byte
		for i, v := range w {
			le.PutUint64(b[8*i:], v)
		}
		if got, want := xxhSum32(w[0], w[1], w[2], w[3]), xxhash.Sum64(b[:]); got != want {
			t.Fatalf("xxhSum32(%#x) = %#x, xxhash.Sum64 = %#x", w, got, want)
		}
	}
	words([4]uint64{})
	words([4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)})
	for i := 0; i < 10000; i++ {
		words([4]uint64{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()})
	}
}
