package wal

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Biased reservation: the fast path without a locked instruction while
// one processor makes every append.
//
// A compare-and-swap is a locked instruction, and on x86 a locked
// instruction waits until every earlier store of its thread is complete,
// the previous append's fenced non-temporal stores included. So in a
// loop of appends each reservation waits for the previous record to
// drain, and nothing the append does after it overlaps that drain.
//
// While the appends of a whole epoch came from one processor (P), the
// next epoch is owned by it (fastEpoch.owner; biasOwner decides). In an
// owned epoch the owner reserves with plain loads and a plain store of
// rv, pinned to its processor (procPin: no other goroutine runs there
// until it unpins) and between two stores of busy:
//
//	owner:  busy = 1; load revoked; load pw, rv; store rv; busy = 0
//
// No other processor reserves in an owned epoch. An append from one sets
// mixed and declines, and fastResume closes the epoch (fastOff), which,
// like any other closing of an owned epoch, first revokes it:
//
//	revokeBias:  revoked = 1; membarrier; wait until busy == 0
//
// and only then closes rv with its compare-and-swap. membarrier makes
// the owner's thread, if it is running, execute a full barrier: if the
// owner loaded revoked before that barrier, its busy = 1 is visible
// after it and revokeBias waits for the store of rv; if after, it finds
// revoked set and does not store. So the owner never stores rv over the
// closing compare-and-swap, and rv has one writer at a time.
//
// busy and revoked are the epoch's own. An owned epoch closes only
// through revokeBias, so an appender that still holds an epoch that
// has closed finds its revoked set, whatever epoch is open now. With one
// busy word for the log, such an appender on a processor that owned an
// earlier epoch could clear busy while the current owner is between its
// stores of it, and revokeBias would close rv under that owner's store.
//
// Closing an owned epoch costs a membarrier (a few microseconds, with
// l.mu held). An epoch closes when it runs out of indexes (fastMaxK, so
// at most every 4095 appends), and whenever the locked path must run: a
// record larger than the in-flight bound, a rollover, Stats, a
// truncation, Close. Contention makes later epochs unowned for a while
// (bias.penalty), so that appenders on several processors do not pay a
// membarrier per epoch.

// hashFirstMax is the largest payload appendOne hashes before it
// reserves, then stores in a second pass. Measured here (AMD EPYC,
// tmpfs): 4 KiB appends took 312-320 ns this way against 347 ns hashed
// in the storing pass. Larger payloads would be read twice from further
// out in the cache hierarchy, for a drain that overlaps no more.
const hashFirstMax = 4096

// biasMinK is how many reservations in a row one processor must have
// made, at the end of an epoch, for the next to be owned by it.
const biasMinK = 256

// biasMaxPenalty bounds how many epochs open unowned after contention.
const biasMaxPenalty = 1024

// biasOwner returns the owner of the epoch fastOn opens (l.mu held), 0
// for none: the owner of the last epoch if no other processor appended
// in it, else the processor that made the last biasMinK reservations of
// the last epoch, unless contention closed an owned epoch lately.
func (l *Log) biasOwner() uint64 {
	f := &l.fast
	if !l.hw.bias {
		return 0
	}
	prev, mixed := uint64(0), f.mixed.Load()
	if ep := f.ep.Load(); ep != nil {
		prev = ep.owner
	}
	switch {
	case prev != 0 && mixed:
		// Contention ended an owned epoch: wait longer each time.
		f.bias.contended++
		f.bias.penalty = min(max(2*f.bias.penalty, 1), biasMaxPenalty)
		f.bias.skip = f.bias.penalty
	case prev != 0:
		f.bias.penalty /= 2
	}
	switch {
	case f.bias.skip > 0:
		f.bias.skip--
		return 0
	case prev != 0 && !mixed:
		return prev
	case f.streak.Load() >= biasMinK:
		return f.lastP.Load()
	}
	return 0
}

// revokeBias takes the open, owned epoch from its owner (l.mu held, from
// fastOff): once it returns, the owner makes no store to rv in it, and
// fastOff may close rv with a compare-and-swap.
func (l *Log) revokeBias(ep *fastEpoch) {
	f := &l.fast
	f.bias.revokes++
	ep.revoked.Store(1)
	if !membarrier() {
		// membarrier worked when it was registered and has failed now
		// (it retries ENOMEM). A stop of the world makes every processor
		// pass a barrier too, and waits for a pinned owner to unpin.
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
	}
	for i := 0; ep.busy.Load() != 0; i++ {
		// The owner is pinned between its stores of busy, which take
		// nanoseconds, unless its thread lost its CPU.
		if i >= fastSpins {
			runtime.Gosched()
		}
	}
}

// noteP records the processor of a reservation made with the
// compare-and-swap, for biasOwner: plain loads and stores on rv's line,
// which the compare-and-swap just took. Appenders on several processors
// may lose each other's counts; they reset the streak anyway.
func (f *fastPath) noteP() {
	p := uint64(procPin() + 1)
	procUnpin()
	if f.lastP.Load() != p {
		storeRelease(&f.lastP, p)
		storeRelease(&f.streak, 1)
		return
	}
	storeRelease(&f.streak, f.streak.Load()+1)
}

// enter begins the owner's reservation in ep, pinned (procPin) on the
// owner's processor: busy set, then revoked loaded (the protocol at the
// top of this file). false: ep is revoked, and the caller must end with
// unbusy at once.
func (ep *fastEpoch) enter() bool {
	storeRelease(&ep.busy, 1)
	return ep.revoked.Load() == 0
}

// unbusy ends the owner's reservation: busy cleared, after its store of
// rv, and the goroutine unpinned.
func (ep *fastEpoch) unbusy() {
	storeRelease(&ep.busy, 0)
	procUnpin()
}

// appendOne is Append on the fast path for one non-empty record that goes
// out with non-temporal stores into a segment this process maps:
// appendFast and writeFast in one frame, with the fewest stores the path
// allows. x86 holds every store that follows a fence until the stores
// before the fence are complete; an append that makes few stores finds
// room for them in the store buffer while the previous append's record
// drains, and overlaps that drain instead of stalling behind it. In an
// owned epoch it runs on the owner's processor and reserves with a plain
// store; in an epoch nobody owns (appenders on several processors), with
// appendFast's compare-and-swap, after the payload's hash, which so
// overlaps the drain there too (two goroutines, medians of two runs of
// 5 and 6 rounds: 8.45 and 8.46 to 9.21 and 9.22 M appends/s at 64 B,
// 7.77 and 7.97 to 8.92 and 9.06 M at 256 B; p = 0.09-0.31 in each run
// on this noisy VM, one goroutine unchanged). ok false: it reserved
// nothing, and appendFast (or the locked path) takes the append: anything
// but a reservation made at once (the gate, the in-flight bound, another
// epoch, another processor's).
func (l *Log) appendOne(data []byte) (first uint64, err error, ok bool) {
	f := &l.fast
	ep := f.ep.Load()
	total := recSize(len(data))
	if ep == nil || len(data) == 0 || len(data) > int(l.opts.SegmentSize) || total > ep.bound || !l.hw.direct(len(data)) || ep.seg.om == nil {
		return 0, nil, false
	}
	// From here the payload is read under the fault guard, as writeFast
	// reads it: it may be a slice of another log's mapping (a record of
	// its iterator) whose file another program truncated. A fault before
	// the reservation declines the append, which the other paths then
	// take and report; after it, the fault becomes the error returned,
	// and any other panic fails the log and passes the turn on before it
	// goes on up.
	var st oneState
	st.old = debug.SetPanicOnFault(true)
	defer func() {
		if !st.done {
			err, ok = l.appendOneRecover(&st, recover(), ok)
		}
	}()
	// A small payload is hashed first, with no store: x86 lets that work
	// run while the previous append's record drains, where stores would
	// fill the store buffer and stall. Large ones are hashed in the pass
	// that stores them, which overlaps the two.
	var sum uint64
	hashed := len(data) <= hashFirstMax
	if hashed {
		sum = xxhSum(data)
	}
	var rv uint64
	if ep.owner == 0 {
		for {
			// pw before rv, as in appendFast.
			w := f.pw.Load()
			rv = f.rv.Load()
			if ep.next(f, w, rv, total, 1) != fastReserve {
				return 0, nil, false
			}
			if f.rv.CompareAndSwap(rv, rvPack(rvOff(rv)+total, ep.gen, rvK(rv)+1, rvR(rv)+1)) {
				break
			}
		}
		if l.hw.bias {
			f.noteP()
		}
	} else {
		if uint64(procPin()+1) != ep.owner {
			procUnpin()
			return 0, nil, false
		}
		if !ep.enter() {
			ep.unbusy()
			return 0, nil, false
		}
		w := f.pw.Load()
		rv = f.rv.Load()
		if ep.next(f, w, rv, total, 1) != fastReserve {
			ep.unbusy()
			return 0, nil, false
		}
		storeRelease(&f.rv, rvPack(rvOff(rv)+total, ep.gen, rvK(rv)+1, rvR(rv)+1))
		ep.unbusy()
	}
	off, k0, r := rvOff(rv), rvK(rv), rvR(rv)
	ok = true // reserved: every way out below returns this append's result
	seg, k := ep.seg, k0
	first = ep.base + k
	end, r1 := off+total, (r+1)&rvRMask
	// Field by field: a composite literal is built on the stack and
	// copied 16 bytes at a time, loads that the store buffer cannot
	// forward from 8-byte stores, and which so wait until the previous
	// append's fenced stores are complete (perf put 91% of appendOne's
	// samples on one).
	st.seg, st.n = seg, uint64(len(data))
	st.rs.first, st.rs.k, st.rs.kEnd, st.rs.end, st.rs.r = first, k, k+1, end, r1
	if f.failed.Load() {
		// The log failed since the check above: write nothing, but take
		// the turn, as appendFast does.
		st.done = true
		debug.SetPanicOnFault(st.old)
		return first, l.fastFinish(st.rs, 0, 0, 0, nil), true
	}
	i := int(first - seg.first)
	seg.offs.chunks[i>>offChunkBits][i&offChunkMask] = uint32(off)
	_, perr := l.writeOne(seg, off, first, data, sum, hashed)
	st.done = true
	debug.SetPanicOnFault(st.old)
	if perr != nil || f.failed.Load() {
		return first, l.fastFinish(st.rs, 0, 1, st.n, perr), true
	}
	for i := 0; pwK(f.pw.Load()) != k; i++ {
		if i >= fastSpins {
			runtime.Gosched()
		}
	}
	if f.failed.Load() {
		return first, l.fastFinish(st.rs, 0, 1, st.n, nil), true
	}
	f.appends++
	f.bytes += uint64(len(data))
	f.fences++
	// As in fastFinish (an owned epoch implies plainPublish).
	if l.hw.plainPublish {
		storeRelease(&f.pw, pwPack(end, false, k+1, r1))
	} else {
		f.pw.Store(pwPack(end, false, k+1, r1))
	}
	if f.watch.Load() != 0 {
		l.mu.Lock()
		l.catchUp() // wakes the tailers
		l.mu.Unlock()
	}
	return first, nil, true
}

// oneState is what appendOne's deferred function needs, so that the
// defer holds one pointer and not a closure over appendOne's variables.
// (That closure made about 20 of the 69 stores cachegrind counted in
// appendOne; removing them changed no timing measurably, 5 rounds.)
type oneState struct {
	old, done bool     // SetPanicOnFault's setting before appendOne; the guard was lifted
	seg       *segment // the segment written, once reserved
	n         uint64   // the payload's length, once reserved
	rs        fastResv // the reservation, once made
}

// appendOneRecover is appendOne's deferred function, for an exit with
// the fault guard still up: a decline before the reservation (p nil),
// a memory fault, another panic, or runtime.Goexit. It lifts the guard
// and returns appendOne's err and ok. Nothing reserved (ok false): a
// fault declines too, and the other paths meet it and report it; any
// other panic goes on up. Reserved: a fault becomes the error returned
// and fails the log; any other panic, or Goexit, fails the log and
// passes the turn on, and goes on up.
func (l *Log) appendOneRecover(st *oneState, p any, ok bool) (error, bool) {
	debug.SetPanicOnFault(st.old)
	fe, fault := p.(faultError)
	if !ok {
		if !fault && p != nil {
			panic(p)
		}
		return nil, false
	}
	if fault {
		return l.fastFinish(st.rs, 0, 1, st.n, faultErr(st.seg.path, fe)), true
	}
	l.fastFinish(st.rs, 0, 0, 0, fmt.Errorf("%w at index %d", errAppendPanicked, st.rs.first))
	if p != nil {
		panic(p)
	}
	return nil, true // runtime.Goexit goes on
}
