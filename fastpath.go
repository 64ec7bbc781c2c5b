package wal

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// The lock-free append path of the persistent-memory modes (cache flush
// and DAX; never msync, whose group commit needs the lock).
//
// While it is on, an append takes no lock. It reserves space and indexes
// with one compare-and-swap on fastPath.rv (in an epoch that one
// processor owns, that processor with a plain store: bias.go), writes
// its offsets and records and makes them durable outside any lock, then
// waits for its turn (every earlier reservation published) by reading
// fastPath.pw, and publishes itself with a store. So appends copy and flush in parallel and still
// become durable, visible and acknowledged in index order, as on the
// locked path: an append returns only once its records and every earlier
// one are durable, and nothing is published after a hole.
//
// No more reservations are in flight at once than there are processors
// and CPUs (GOMAXPROCS and runtime.NumCPU, at most fastMaxSlots): an
// append that would exceed that waits at the gate before it reserves,
// all but one asleep (gateWait). Otherwise, with more appenders than
// processors, appends would wait for their turn behind appends whose
// goroutines are not running; and with more processors than CPUs, behind
// appends whose threads the kernel is not running, while the waiting
// threads spin on the CPUs those need (fastSlots).
//
// The locked path (reserve and commit under Log.mu) still does everything
// else: rollover, a reservation larger than the in-flight bound, the index
// running out, an offset index that needs another chunk, appends while
// Close or a truncation waits, and every append after a failure. It turns
// the fast path off first (fastOff, under Log.mu), which stops new fast
// reservations, waits until the ones made are published, and brings the
// locked state (next, tail, durable, the active segment's offset count,
// the counters) up to date; commit turns it back on once nothing is in
// flight, and an append the fast path declined waits for that and
// reopens it (fastResume), or opens the next epoch when the current one
// ran out of reservations. Readers under Log.mu see what the fast path
// published through catchUp.
//
// Each period the fast path is on is an epoch, with its own immutable
// fastEpoch and a 16-bit generation stamped in rv, so that an append that
// read the epoch before a switch cannot reserve in the next one.

// fastClosed in rv's offset bits means the fast path is off.
const fastClosed = 1<<32 - 1

// rv's fields, from the top: the next free offset (32 bits; fastClosed
// when off), the epoch's generation (16), the indexes reserved in the
// epoch (12) and the reservations made in it, modulo 16 (4).
const (
	fastMaxK = 1<<12 - 1 // indexes one epoch may reserve
	rvRMask  = 1<<4 - 1
	// fastMaxSlots bounds the reservations in flight at once. The gate
	// counts them modulo 16, from two loads that publications may come
	// between (which only makes the count higher); at half the modulus,
	// at least 8 publications between one append's two loads are needed
	// before it can take the count for lower than it is, and then it
	// goes one over.
	fastMaxSlots = 8
)

func rvPack(off int, gen, k, r uint64) uint64 {
	return uint64(off)<<32 | gen<<16 | k<<4 | r&rvRMask
}
func rvOff(rv uint64) int    { return int(rv >> 32) }
func rvGen(rv uint64) uint64 { return rv >> 16 & (1<<16 - 1) }
func rvK(rv uint64) uint64   { return rv >> 4 & fastMaxK }
func rvR(rv uint64) uint64   { return rv & rvRMask }

func pwPack(off int, failed bool, k, r uint64) uint64 {
	w := uint64(off)<<32 | k<<4 | r&rvRMask
	if failed {
		w |= 1 << 16
	}
	return w
}
func pwOff(w uint64) int     { return int(w >> 32) }
func pwFailed(w uint64) bool { return w&(1<<16) != 0 }
func pwK(w uint64) uint64    { return w >> 4 & fastMaxK }
func pwR(w uint64) uint64    { return w & rvRMask }

// fastEpoch is what an epoch's appends need and nobody changes while it
// lasts, and the two words of an owned epoch's protocol (bias.go).
type fastEpoch struct {
	seg   *segment
	gen   uint64 // rv's generation bits
	base  uint64 // index of the epoch's first reservation
	end   int    // the segment's size
	bound int    // the in-flight bound in effect, in bytes
	limit uint64 // reservations the epoch may make: the offset chunks allocated and the indexes left
	slots uint64 // reservations that may be in flight at once: fastSlots
	owner uint64 // 1 + the processor that owns the epoch and alone reserves in it (bias.go); 0: none

	// busy is 1 from before the owner loads revoked until after its
	// store of rv; only the owner writes it. revoked: fastOff is taking
	// the epoch from its owner. Both are the epoch's own, not the log's:
	// an appender still holding an epoch that has since closed must not
	// write a word that the current epoch's revocation reads. They sit on
	// a line of their own, which in an owned epoch only its owner writes
	// (and revokeBias, once).
	_       [64]byte
	busy    atomic.Uint64
	revoked atomic.Uint32
	_       [52]byte
}

// fastPath is the state of the lock-free append path. rv and the
// publication word are on cache lines of their own (each shares its line
// only with what the same appends write: rv with noteP's heuristic
// counts and mixed): every append modifies both.
type fastPath struct {
	_ [64]byte
	// rv is the reservation word: the next free offset in the active
	// segment (bits 32-63; fastClosed when off), the epoch's generation
	// (16-31), the indexes reserved in the epoch (4-15) and the
	// reservations made in it, modulo 16 (0-3).
	rv atomic.Uint64
	// lastP is 1 + the processor of the epoch's last reservation made
	// with the compare-and-swap (0: none yet), and streak how many
	// reservations in a row came from it (noteP; plain stores, a
	// heuristic). mixed: an append met an epoch another processor owns.
	lastP  atomic.Uint64
	streak atomic.Uint64
	mixed  atomic.Bool
	_      [36]byte
	// pw is the publication word, written only by the append whose turn
	// it is, in index order, with one store (a plain one where
	// hw.plainPublish says so: see fastFinish): the offset just past the
	// last durable index (bits 32-63), whether the log failed (bit 16),
	// the indexes of the epoch published (4-15; durable, or failed) and
	// rv's reservation count (modulo 16) just after the last reservation
	// published (0-3).
	pw atomic.Uint64
	// frozen is the last durable index once pw's failed bit is set: the
	// append that sets it stores it first.
	frozen atomic.Uint64
	// Counters of the appends published on the fast path (Stats), plain
	// words: only the append whose turn it is writes them, between
	// reading pw and storing it, and fastOff reads them once every
	// reservation of the epoch is published.
	appends, bytes, fences, flushed uint64
	_                               [64]byte
	// Read by every append, written only while the path is off or when a
	// tailer starts or stops waiting.
	ep     atomic.Pointer[fastEpoch]
	failed atomic.Bool  // the log failed: publish nothing as durable
	watch  atomic.Int32 // a Tailer waits: publishers must wake it (catchUp)
	_      [64]byte

	// gate is held by the one append that waits for a slot; the others
	// wait for gate.
	gate sync.Mutex

	// Under Log.mu.
	on      bool                                                   // an epoch is open (rv may be open)
	closing bool                                                   // fastOff is waiting for the epoch's appends
	gen     uint64                                                 // generation of the last epoch
	seen    struct{ appends, bytes, fences, flushed, next uint64 } // what catchUp has counted
	fenced  bool                                                   // a Tailer called membarrier since watch was set (Tailer.step)
	bias    struct{ skip, penalty, revokes, contended int }        // epochs to open unowned, and how many after the next contention; owned epochs closed, and closed for contention (bias.go)
}

// fastOn opens an epoch (l.mu held) when the fast path can run: a
// persistent-memory mode, nothing in flight or waiting, the log open and
// healthy.
func (l *Log) fastOn() {
	f := &l.fast
	if f.on || l.persist == PersistMsync || l.opts.ReadOnly || l.closed || l.failed != nil ||
		l.quiet > 0 || l.largeWaiting > 0 || l.inFlight != 0 || l.rhead != l.rseq || len(l.segs) == 0 {
		return
	}
	seg := l.segs[len(l.segs)-1]
	have := int(l.next - seg.first) // offsets in the segment
	if l.next > maxIndex || l.tail >= seg.size() {
		return
	}
	// Room in the offset index for fastMaxK more, or what the segment
	// can still hold, whichever is less.
	want := min(have+fastMaxK, have+(seg.size()-l.tail)/recSize(0)+1)
	for len(seg.offs.chunks)<<offChunkBits < want {
		seg.offs.chunks = append(seg.offs.chunks, make([]uint32, 1<<offChunkBits))
	}
	limit := min(uint64(len(seg.offs.chunks)<<offChunkBits-have), fastMaxK, maxIndex-l.next+1)
	f.gen = (f.gen + 1) & (1<<16 - 1)
	owner := l.biasOwner()
	f.lastP.Store(0)
	f.streak.Store(0)
	f.mixed.Store(false)
	// pw before ep: an append that loads the new epoch counts its
	// reservations from zero.
	f.pw.Store(pwPack(l.dOff, false, 0, 0))
	f.ep.Store(&fastEpoch{
		seg:   seg,
		gen:   f.gen,
		base:  l.next,
		end:   seg.size(),
		bound: min(int(l.opts.InFlightBound), seg.bound()),
		limit: limit,
		slots: fastSlots(runtime.GOMAXPROCS(0), runtime.NumCPU()),
		owner: owner,
	})
	f.seen.next = l.next
	f.on = true
	f.rv.Store(rvPack(l.tail, f.gen, 0, 0))
}

// fastOff closes the epoch (l.mu held): no new fast reservation, and once
// the epoch's appends are published (l.mu is released while waiting),
// the locked state takes over from them.
func (l *Log) fastOff() {
	f := &l.fast
	for f.on && f.closing {
		l.mu.Unlock()
		runtime.Gosched()
		l.mu.Lock()
	}
	if !f.on {
		return
	}
	f.closing = true
	if ep := f.ep.Load(); ep.owner != 0 {
		l.revokeBias(ep)
	}
	var old uint64
	for {
		old = f.rv.Load()
		if f.rv.CompareAndSwap(old, old|fastClosed<<32) {
			break
		}
	}
	ep := f.ep.Load()
	k := rvK(old)
	last := ep.base + k - 1
	for i := 0; pwK(f.pw.Load()) != k; i++ {
		if i >= fastSpins {
			l.mu.Unlock()
			runtime.Gosched()
			l.mu.Lock()
		}
	}
	off := rvOff(old)
	l.next, l.tail = ep.base+k, off // catchUp counts them in Records
	l.catchUp()
	l.countFast()
	l.written, l.wOff = last, off
	f.on, f.closing = false, false
	l.cond.Broadcast()
}

// fastSpins is how many times a waiting append reads the publication
// point before it yields its processor at each further read.
const fastSpins = 1000

// catchUp brings the locked state up to what the fast path has published
// (l.mu held): LastIndex, the active segment's offset count, next and
// tail (which count reservations still in flight) and Stats.Records. The
// other counters wait for fastOff.
func (l *Log) catchUp() {
	f := &l.fast
	if !f.on {
		return
	}
	ep := f.ep.Load()
	w := f.pw.Load()
	dur, off := ep.base+pwK(w)-1, pwOff(w)
	if pwFailed(w) {
		dur = f.frozen.Load()
	}
	rv := f.rv.Load()
	if dur > l.durable && dur+1 >= ep.base {
		// The offsets up to dur were written before dur was published.
		ep.seg.offs.n = int(dur + 1 - ep.seg.first)
		l.durable, l.dOff = dur, off
		l.wakeTailers()
	}
	if rvOff(rv) != fastClosed {
		l.next, l.tail = ep.base+rvK(rv), rvOff(rv)
	}
	l.stats.Records += l.next - f.seen.next
	f.seen.next = l.next
}

// countFast adds the counters of the fast path's appends to the locked
// ones (l.mu held, every reservation of the epoch published).
func (l *Log) countFast() {
	f := &l.fast
	l.stats.Appends += f.appends - f.seen.appends
	l.stats.Bytes += f.bytes - f.seen.bytes
	l.stats.Fences += f.fences - f.seen.fences
	l.stats.FlushedLines += f.flushed - f.seen.flushed
	l.flushedLines += f.flushed - f.seen.flushed
	f.seen.appends, f.seen.bytes, f.seen.fences, f.seen.flushed = f.appends, f.bytes, f.fences, f.flushed
}

// fastResume is for an append the fast path declined (no lock held). It
// reopens the fast path where only the locked path's bookkeeping keeps
// it closed: an epoch out of reservations, or appends on the locked path
// still in flight (with several appenders, one append there, for a
// rollover or a large record, would otherwise keep the next ones there
// for as long as they keep coming). It reports whether the append fits
// the open fast path; false leaves it to the locked path.
func (l *Log) fastResume(total int, count uint64) bool {
	if l.persist == PersistMsync || count > fastMaxK {
		return false
	}
	f := &l.fast
	l.mu.Lock()
	defer l.mu.Unlock()
	renewed := false
	for {
		if l.closed || l.failed != nil || l.quiet > 0 || l.largeWaiting > 0 || len(l.segs) == 0 {
			return false
		}
		if f.on && !f.closing && f.ep.Load().owner != 0 && f.mixed.Load() {
			// An append from another processor met the epoch's owner:
			// close it, and the next opens without an owner.
			l.fastOff()
			continue
		}
		if f.on && !f.closing {
			ep, rv := f.ep.Load(), f.rv.Load()
			off, k := rvOff(rv), rvK(rv)
			if total > ep.bound || off+total > ep.end {
				return false // a rollover or a large record: the locked path's work
			}
			if k+count <= ep.limit {
				return true
			}
			if renewed {
				// Other appends filled the epoch opened for this one, or
				// it cannot take this one at all (the index runs out):
				// no more switches for it.
				return false
			}
			l.fastOff() // out of reservations: the next epoch may take it
			renewed = true
			continue
		}
		if !f.on {
			// The locked state is exact.
			seg := l.segs[len(l.segs)-1]
			if l.tail+total > seg.size() || total > min(int(l.opts.InFlightBound), seg.bound()) {
				return false
			}
			if l.inFlight == 0 {
				l.fastOn()
				if !f.on {
					return false
				}
				continue
			}
		}
		// Appends on the locked path are in flight (commit broadcasts
		// when the last is done), or fastOff is waiting for the epoch's
		// (it broadcasts when done).
		l.resumeWaiting++
		l.cond.Wait()
		l.resumeWaiting--
	}
}

// What an append does after reading rv and pw (appendFast).
const (
	fastReserve  = iota // reserve
	fastDecline         // leave the append to fastResume or the locked path
	fastNewEpoch        // read the current epoch and try again
	fastBound           // wait for the in-flight bound
	fastGate            // wait at the gate
)

// next judges a reservation of count records of total bytes in epoch ep,
// from pw and rv as read in that order: what the append does next.
func (ep *fastEpoch) next(f *fastPath, w, rv uint64, total int, count uint64) int {
	off, k, r := rvOff(rv), rvK(rv), rvR(rv)
	switch {
	case off == fastClosed:
		return fastDecline
	case rvGen(rv) != ep.gen:
		// An epoch opened since ep was read (it is stored before rv):
		// take the current one.
		return fastNewEpoch
	case off+total > ep.end || k+count > ep.limit || f.failed.Load():
		return fastDecline
	case f.ep.Load() != ep:
		// The generation bits are 16: ep was an epoch that many switches
		// old.
		return fastNewEpoch
	case off+total-pwOff(w) > ep.bound && off != pwOff(w):
		return fastBound // the in-flight bound, as in reserve
	case (r-pwR(w))&rvRMask >= ep.slots:
		// The gate: no more reservations in flight than processors and
		// CPUs (fastSlots), so that no append waits for its turn behind
		// one that is not running.
		return fastGate
	}
	return fastReserve
}

// appendFast appends on the fast path; ok false means it did not
// reserve, and the locked path must take the append.
func (l *Log) appendFast(one []byte, many [][]byte, total int) (first uint64, err error, ok bool) {
	f := &l.fast
	ep := f.ep.Load()
	if ep == nil || total > ep.bound {
		return 0, nil, false
	}
	count := uint64(1)
	if many != nil {
		count = uint64(len(many))
	}
	var off int
	var k, r uint64
	for spins := 0; ; spins++ {
		// An owned epoch: its owner reserves with plain loads and a
		// plain store, pinned to its processor and between busy's two
		// stores; no other processor reserves in it (bias.go).
		pinned := false
		if ep.owner != 0 {
			if uint64(procPin()+1) != ep.owner {
				procUnpin()
				if f.ep.Load() != ep {
					ep = f.ep.Load()
					continue
				}
				if !f.mixed.Load() {
					f.mixed.Store(true) // fastResume closes the epoch
				}
				return 0, nil, false
			}
			if !ep.enter() {
				ep.unbusy()
				return 0, nil, false
			}
			pinned = true
		}
		// pw before rv: the reservations in flight come out no fewer
		// than there are (but see fastMaxSlots), and the bytes in flight
		// no fewer.
		w := f.pw.Load()
		old := f.rv.Load()
		off, k, r = rvOff(old), rvK(old), rvR(old)
		next := ep.next(f, w, old, total, count)
		if next == fastReserve {
			nv := rvPack(off+total, ep.gen, k+count, r+1)
			if pinned {
				storeRelease(&f.rv, nv)
				ep.unbusy()
				break
			}
			if f.rv.CompareAndSwap(old, nv) {
				if l.hw.bias {
					f.noteP()
				}
				break
			}
			continue
		}
		if pinned {
			ep.unbusy()
		}
		switch next {
		case fastDecline:
			return 0, nil, false
		case fastNewEpoch:
			if ep = f.ep.Load(); total > ep.bound {
				return 0, nil, false
			}
		case fastBound:
			if spins >= fastSpins {
				runtime.Gosched()
			}
		case fastGate:
			f.gateWait(ep)
		}
	}
	seg := ep.seg
	first = ep.base + k
	rs := fastResv{first: first, k: k, kEnd: k + count, end: off + total, r: (r + 1) & rvRMask}
	if f.failed.Load() {
		// The log failed since the check above: write nothing, but take
		// the turn, so that no later append waits for ever.
		return first, l.fastFinish(rs, 0, 0, 0, nil), true
	}
	i := int(first - seg.first)
	payload := uint64(len(one))
	if many == nil {
		seg.offs.chunks[i>>offChunkBits][i&offChunkMask] = uint32(off)
	} else {
		p := off
		for j, r := range many {
			seg.offs.chunks[(i+j)>>offChunkBits][(i+j)&offChunkMask] = uint32(p)
			p += recSize(len(r))
			payload += uint64(len(r))
		}
	}
	flushed, perr := l.writeFast(seg, off, rs, one, many)
	return first, l.fastFinish(rs, flushed, 1, payload, perr), true
}

// writeFast writes the records of reservation rs at off, as guardFault
// would, but with one deferred call for both that and what the fast path
// needs on a panic (one defer less per append): a memory fault becomes
// the error returned, and any other panic (a Media that panics) or a
// runtime.Goexit fails the log and passes the turn on, so that no later
// append waits for ever, before it goes on up.
func (l *Log) writeFast(seg *segment, off int, rs fastResv, one []byte, many [][]byte) (flushed int, err error) {
	old := debug.SetPanicOnFault(true)
	done := false
	// The closure takes rs by address: a copy would load it 16 bytes at
	// a time from where it was stored 8 bytes at a time, a load that the
	// store buffer cannot serve, and which so waits until the previous
	// append's fenced stores are complete.
	rsp := &rs
	defer func() {
		debug.SetPanicOnFault(old)
		if done {
			return
		}
		r := recover()
		if fe, ok := r.(faultError); ok {
			err = faultErr(seg.path, fe)
			return
		}
		// A panic, or runtime.Goexit (a test's Media calling t.FailNow),
		// where recover gives nil.
		l.fastFinish(*rsp, 0, 0, 0, fmt.Errorf("%w at index %d", errAppendPanicked, rsp.first))
		if r != nil {
			panic(r)
		}
	}()
	if many == nil && seg.om != nil && l.hw.direct(len(one)) {
		flushed, err = l.writeOne(seg, off, rs.first, one, 0, false)
	} else {
		flushed, err = l.writeRecords(seg, off, rs.first, one, many)
	}
	done = true
	return flushed, err
}

// fastSlots is how many reservations may be in flight at once with procs
// processors (GOMAXPROCS) on cpus CPUs (runtime.NumCPU): the fewer, and
// at most fastMaxSlots. Measured here with 8 appenders of 64 B on 2 CPUs
// and GOMAXPROCS 8 (testdata/slots-2026-11-27.txt): 107 K appends/s, p99
// 2.5 ms, with a slot per processor; 5.66 M, p99 310 ns, with a slot per
// CPU.
func fastSlots(procs, cpus int) uint64 {
	return uint64(max(1, min(procs, cpus, fastMaxSlots)))
}

// gateWait waits until fewer than ep.slots reservations are in flight,
// ep's epoch is over, or the log failed (the append will not reserve
// then). One waiting append holds gate and reads the publication point;
// the others wait for gate, asleep.
func (f *fastPath) gateWait(ep *fastEpoch) {
	f.gate.Lock()
	for i := 0; ; i++ {
		w := f.pw.Load()
		rv := f.rv.Load()
		if rvOff(rv) == fastClosed || rvGen(rv) != ep.gen || (rvR(rv)-pwR(w))&rvRMask < ep.slots || f.failed.Load() {
			break
		}
		if i >= gateSpins {
			runtime.Gosched()
		}
	}
	f.gate.Unlock()
}

// gateSpins is how many times an append waiting at the gate reads the
// publication point before it yields its processor at each further read:
// fewer than fastSpins, since the append it waits for is likely not
// running.
const gateSpins = 100

// fastResv is a reservation on the fast path.
type fastResv struct {
	first   uint64 // its first index
	k, kEnd uint64 // the indexes reserved in the epoch before it, and with it
	end     int    // the offset just past it
	r       uint64 // rv's reservation count (modulo 16) just after it
}

// fastFinish waits for the turn of reservation rs and publishes it:
// durable when its write succeeded and the log has not failed, else
// failed. flushed, fences and payload are what the append adds to the
// counters.
func (l *Log) fastFinish(rs fastResv, flushed int, fences, payload uint64, perr error) error {
	f := &l.fast
	if perr != nil {
		l.mu.Lock()
		l.fail(perr) // at once: later appends need not wait to learn it
		l.mu.Unlock()
	}
	var w uint64
	for i := 0; ; i++ {
		if w = f.pw.Load(); pwK(w) == rs.k {
			break
		}
		if i >= fastSpins {
			runtime.Gosched()
		}
	}
	f.appends++
	f.bytes += payload
	f.flushed += uint64(flushed)
	f.fences += fences
	failed := f.failed.Load()
	end := rs.end
	if failed {
		if !pwFailed(w) {
			// The first to publish since the log failed: every earlier
			// index is durable, and none from here on counts as such.
			f.frozen.Store(rs.first - 1)
		}
		end = pwOff(w)
	}
	if w = pwPack(end, failed, rs.kEnd, rs.r); l.hw.plainPublish {
		// The append returns while its fenced stores drain; a Tailer
		// that announces its wait after the load of watch below, and
		// then misses this store, would not be woken: the first Tailer
		// to wait since watch was set calls membarrier between the two
		// (Tailer.step).
		storeRelease(&f.pw, w)
	} else {
		f.pw.Store(w)
	}
	if failed || f.watch.Load() != 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.catchUp() // wakes the tailers
		if failed {
			return l.failed
		}
	}
	return nil
}
