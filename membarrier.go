package wal

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// membarrier(2) commands (linux/membarrier.h).
const (
	membarrierQuery                    = 0
	membarrierPrivateExpedited         = 1 << 3
	membarrierRegisterPrivateExpedited = 1 << 4
)

// membarrierOK registers this process for expedited private membarriers
// once, and reports whether that worked (Linux 4.14 and later, where no
// seccomp filter refuses the call).
var membarrierOK = sync.OnceValue(func() bool {
	cmds, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierQuery, 0, 0)
	const want = membarrierPrivateExpedited | membarrierRegisterPrivateExpedited
	if errno != 0 || cmds&want != want {
		return false
	}
	_, _, errno = unix.Syscall(unix.SYS_MEMBARRIER, membarrierRegisterPrivateExpedited, 0, 0)
	return errno == 0
})

// membarrier makes every thread of this process that is running now
// execute a full memory barrier before it returns: each store a thread
// made before that point is visible to the caller afterwards, and each
// load it makes after that point sees the caller's earlier stores. Only
// after membarrierOK reported true. It reports whether the barrier
// happened: the kernel may refuse it for want of memory (ENOMEM, with
// CPUMASK_OFFSTACK), which is retried a few times first.
func membarrier() bool {
	for range 10 {
		_, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierPrivateExpedited, 0, 0)
		switch errno {
		case 0:
			return true
		case unix.ENOMEM, unix.EINTR, unix.EAGAIN:
			runtime.Gosched()
		default:
			return false
		}
	}
	return false
}
