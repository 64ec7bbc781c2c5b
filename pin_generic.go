//go:build !amd64 || purego

package wal

// procPin and procUnpin: the biased reservation (bias.go) needs the plain
// store of flush_amd64.s and is never used in this build (hw.bias is
// false). -1 is no processor, so an epoch is never owned through these.
func procPin() int { return -1 }
func procUnpin()   {}
