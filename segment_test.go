package wal

import "testing"

// TestOffIndex checks that offsets read back across chunk boundaries, also
// after a truncation into an earlier chunk and appends past it again.
func TestOffIndex(t *testing.T) {
	var x offIndex
	const n = 3<<offChunkBits + 5
	for i := range n {
		x.Append(uint32(i * 7))
	}
	if x.Len() != n || len(x.chunks) != 4 {
		t.Fatalf("Len %d with %d chunks, want %d with 4", x.Len(), len(x.chunks), n)
	}
	for i := range n {
		if got := x.At(i); got != uint32(i*7) {
			t.Fatalf("At(%d) = %d, want %d", i, got, i*7)
		}
	}
	cut := 1<<offChunkBits - 1
	x.Truncate(cut)
	for i := cut; i < n; i++ {
		x.Append(uint32(i))
	}
	if x.Len() != n || len(x.chunks) != 4 {
		t.Fatalf("after truncation: Len %d with %d chunks, want %d with 4", x.Len(), len(x.chunks), n)
	}
	for _, i := range []int{0, cut - 1, cut, cut + 1, n - 1} {
		want := uint32(i * 7)
		if i >= cut {
			want = uint32(i)
		}
		if got := x.At(i); got != want {
			t.Fatalf("after truncation: At(%d) = %d, want %d", i, got, want)
		}
	}
}
