package wal

import (
	"fmt"
	"runtime/debug"
)

// Memory faults. A segment is a file mapped into memory: if another program
// truncates the file, or the media fails, touching the mapping raises
// SIGBUS or SIGSEGV. The read and append paths run their accesses under
// guardFault, which turns such a fault into an error instead of a crash.
//
// Limits (those of runtime/debug.SetPanicOnFault): only faults in the
// guarded goroutine's own code are caught; a slice borrowed through
// Records and read in the caller's loop body is not guarded; and after a
// fault in the middle of a store the affected record is in an unknown
// state, so the log fails (ErrFailed) and must be reopened.

// faultError is what a recovered memory fault looks like.
type faultError interface {
	error
	Addr() uintptr
}

// guardFault runs f with faults turned into panics and recovered into an
// error wrapping ErrCorrupt that names where the fault happened.
func guardFault(where string, f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			fe, ok := r.(faultError)
			if !ok {
				panic(r)
			}
			err = faultErr(where, fe)
		}
	}()
	return f()
}

// faultErr is the error for memory fault fe recovered at where.
func faultErr(where string, fe faultError) error {
	return fmt.Errorf("%w: %s: memory fault at %#x (the file was truncated by another program, or the media failed): %v",
		ErrCorrupt, where, fe.Addr(), fe)
}
