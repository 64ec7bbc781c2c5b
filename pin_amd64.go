//go:build !purego

package wal

import _ "unsafe" // go:linkname

// procPin keeps the calling goroutine on its processor (P), unpreemptible,
// until procUnpin, and returns the processor's id. The runtime keeps it
// for outside packages (see its comment on procPin). Only the biased
// reservation (bias.go) uses it, which needs the assembly's plain store.
//
//go:linkname procPin runtime.procPin
func procPin() int

// procUnpin ends procPin.
//
//go:linkname procUnpin runtime.procUnpin
func procUnpin()
