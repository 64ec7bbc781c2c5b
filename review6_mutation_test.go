package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Tests written by mutation testing of the append, publication, flush,
// checksum and reader code (review 6): each kills a mutant of that code
// which the rest of the suite let through.

// r6mOpen opens a new log with persistence p and 1 MiB segments on
// /dev/shm (or the test's temporary directory), closed at cleanup.
func r6mOpen(t *testing.T, p Persist) *Log {
	t.Helper()
	t.Setenv("WAL_PERSIST", "")
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-r6m-")
	if err != nil {
		dir = t.TempDir()
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	l, err := Open(filepath.Join(dir, "log"), &Options{SegmentSize: 1 << 20, Persist: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// r6mReservation is an append stopped between its reservation and its
// commit, driven by hand through the append path's own steps.
type r6mReservation struct {
	seg   *segment
	off   int
	first uint64
	rs    uint64
	data  []byte
}

func r6mReserve(t *testing.T, l *Log, data []byte) r6mReservation {
	t.Helper()
	seg, off, first, rs, err := l.reserve(recSize(len(data)), data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r6mReservation{seg, off, first, rs, data}
}

// writeAndCommit finishes the append as Log.append does.
func (r r6mReservation) writeAndCommit(l *Log) error {
	flushed, err := l.writeRecords(r.seg, r.off, r.first, r.data, nil)
	return l.commit(r.rs, r.first, flushed, err)
}

// TestReview6MutIndexExhaustedExactFit: the last index the format allows,
// maxIndex, can be given to a record, and a batch may end exactly on it;
// only an index beyond it is refused with ErrIndexExhausted. (Mutant: the
// check in reserve off by one, refusing the records that end on maxIndex.)
func TestReview6MutIndexExhaustedExactFit(t *testing.T) {
	l := r6mOpen(t, PersistCacheFlush)
	if err := l.TruncateFront(maxIndex - 1); err != nil {
		t.Fatal(err)
	}
	first, err := l.AppendBatch([][]byte{[]byte("next to last"), []byte("last")})
	if err != nil || first != maxIndex-1 {
		t.Fatalf("AppendBatch of the last two indexes = %d, %v; want %d, nil", first, err, uint64(maxIndex-1))
	}
	if last := l.LastIndex(); last != maxIndex {
		t.Fatalf("LastIndex %d, want %d", last, uint64(maxIndex))
	}
	if got, err := l.Read(maxIndex); err != nil || string(got) != "last" {
		t.Fatalf("Read(maxIndex) = %q, %v", got, err)
	}
	if idx, err := l.Append([]byte("beyond")); !errors.Is(err, ErrIndexExhausted) {
		t.Fatalf("Append past maxIndex = %d, %v; want ErrIndexExhausted", idx, err)
	}

	l2 := r6mOpen(t, PersistCacheFlush)
	if err := l2.TruncateFront(maxIndex); err != nil {
		t.Fatal(err)
	}
	if idx, err := l2.Append([]byte("the very last")); err != nil || idx != maxIndex {
		t.Fatalf("Append at maxIndex = %d, %v; want %d, nil", idx, err, uint64(maxIndex))
	}
	if _, err := l2.AppendBatch([][]byte{nil}); !errors.Is(err, ErrIndexExhausted) {
		t.Fatalf("AppendBatch past maxIndex = %v; want ErrIndexExhausted", err)
	}
}

// TestReview6MutRingHoldsManyReservations: more appends in flight
// (reserved, not yet committed) than the reservation ring's first size.
// Committed in index order, each must publish exactly up to itself.
// (Mutant: the ring grown only once it is over-full, so the 65th
// reservation overwrites the oldest one's slot, and committing the oldest
// publishes 65 records at once.)
func TestReview6MutRingHoldsManyReservations(t *testing.T) {
	l := r6mOpen(t, PersistCacheFlush)
	const n = 300
	rs := make([]r6mReservation, n)
	for i := range rs {
		rs[i] = r6mReserve(t, l, fmt.Appendf(nil, "record %d", i+1))
		if rs[i].first != uint64(i+1) {
			t.Fatalf("reservation %d got index %d", i, rs[i].first)
		}
	}
	for i, r := range rs {
		if err := r.writeAndCommit(l); err != nil {
			t.Fatal(err)
		}
		if last := l.LastIndex(); last != uint64(i+1) {
			t.Fatalf("after committing record %d of %d reserved, LastIndex is %d", i+1, n, last)
		}
	}
	for i := range rs {
		if got, err := l.Read(uint64(i + 1)); err != nil || string(got) != fmt.Sprintf("record %d", i+1) {
			t.Fatalf("Read(%d) = %q, %v", i+1, got, err)
		}
	}
}

// TestReview6MutNoPublicationPastAHole: a later append finishes its write
// while an earlier one has not. Neither it nor anything after the hole may
// be published (LastIndex, Read, Tail) until the earlier one is written,
// and its Append must not return before. (Mutant: commit publishes its own
// record whether or not every earlier one is written.)
func TestReview6MutNoPublicationPastAHole(t *testing.T) {
	l := r6mOpen(t, PersistCacheFlush)
	if _, err := l.Append([]byte("zero")); err != nil {
		t.Fatal(err)
	}
	a := r6mReserve(t, l, []byte("first"))
	b := r6mReserve(t, l, []byte("second"))
	done := make(chan error, 1)
	go func() { done <- b.writeAndCommit(l) }()
	for { // until b's commit has marked it written
		l.mu.Lock()
		marked := l.ring[b.rs&uint64(len(l.ring)-1)].done
		l.mu.Unlock()
		if marked {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var violations []string // reported once record 2 is written: Close waits for the blocked Append
	if last := l.LastIndex(); last != 1 {
		violations = append(violations, fmt.Sprintf("LastIndex %d while record 2 is not written; want 1", last))
	}
	if _, err := l.Read(3); !errors.Is(err, ErrNotFound) {
		violations = append(violations, fmt.Sprintf("Read(3) past the hole at 2 = %v; want ErrNotFound", err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if idx, _, err := l.Tail(2).Next(ctx, nil); err == nil {
		violations = append(violations, fmt.Sprintf("Tail(2).Next returned record %d while record 2 is not written", idx))
	}
	returned := false
	select {
	case err := <-done:
		returned = true
		violations = append(violations, fmt.Sprintf("Append of record 3 returned (%v) while record 2 is not written", err))
	default:
	}
	err := a.writeAndCommit(l)
	if !returned {
		if berr := <-done; berr != nil {
			t.Error(berr)
		}
	}
	if len(violations) > 0 {
		t.Fatal(strings.Join(violations, "; "))
	}
	if err != nil {
		t.Fatal(err)
	}
	if last := l.LastIndex(); last != 3 {
		t.Fatalf("LastIndex %d, want 3", last)
	}
	for i, want := range []string{"zero", "first", "second"} {
		if got, err := l.Read(uint64(i + 1)); err != nil || string(got) != want {
			t.Fatalf("Read(%d) = %q, %v; want %q", i+1, got, err, want)
		}
	}
}

// r6mWaitingIn reports whether some goroutine is blocked in sync.Cond.Wait
// called from a function whose name contains fn.
func r6mWaitingIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		for i := 0; i+2 < len(lines); i++ {
			if strings.HasPrefix(lines[i], "sync.(*Cond).Wait(") && strings.Contains(lines[i+2], fn+"(") {
				return true
			}
		}
	}
	return false
}

// TestReview6MutRolloverWaitsForEarlierReservations: an append that needs
// the next segment while an earlier reservation in the active segment is
// not yet written must wait: the next segment is activated only once every
// record of the active one is written and durable. (Mutant: rollover
// checks only that everything written is durable, so it activates the next
// segment before the earlier record is even written: a crash then leaves a
// sealed segment with a torn record, and with msync the written record is
// never synced, since the group commit syncs the active segment only.)
func TestReview6MutRolloverWaitsForEarlierReservations(t *testing.T) {
	for _, p := range []Persist{PersistCacheFlush, PersistMsync} {
		t.Run(p.String(), func(t *testing.T) {
			l := r6mOpen(t, p)
			small := bytes.Repeat([]byte{'a'}, 64)
			room := l.segs[0].size() - segHeaderSize - recSize(len(small))
			big := bytes.Repeat([]byte{'b'}, room-recHeaderSize)
			if recSize(len(big)) != room {
				t.Fatalf("filler of %d bytes takes %d, want %d", len(big), recSize(len(big)), room)
			}
			if _, err := l.Append(big); err != nil {
				t.Fatal(err)
			}
			a := r6mReserve(t, l, small) // the active segment's last record
			if a.off+recSize(len(small)) != a.seg.size() {
				t.Fatalf("record 2 at %d does not end the segment", a.off)
			}
			type res struct {
				idx uint64
				err error
			}
			done := make(chan res, 1)
			go func() {
				idx, err := l.Append([]byte("in the next segment"))
				done <- res{idx, err}
			}()
			violation := ""
			for !r6mWaitingIn("(*Log).reserve") {
				l.mu.Lock()
				segs, rseq := len(l.segs), l.rseq-l.rhead
				l.mu.Unlock()
				if segs > 1 || rseq > 1 {
					violation = fmt.Sprintf("the next segment was activated (%d segments, %d reservations in flight) while record 2 of the active one was unwritten", segs, rseq)
					break
				}
				time.Sleep(time.Millisecond)
			}
			err := a.writeAndCommit(l) // before any Fatal: Close waits for the blocked Append
			r := <-done
			if violation != "" {
				t.Fatal(violation)
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.err != nil || r.idx != 3 {
				t.Fatalf("Append into the next segment = %d, %v; want 3", r.idx, r.err)
			}
			if n := l.Stats().Segments; n != 2 {
				t.Fatalf("%d segments, want 2", n)
			}
			for i, want := range [][]byte{big, small, []byte("in the next segment")} {
				if got, err := l.Read(uint64(i + 1)); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("Read(%d): %d bytes, %v", i+1, len(got), err)
				}
			}
		})
	}
}

// TestReview6MutCopyNTWritesBackHeadAndTail: copyNT leaves an unaligned
// head and tail to plain stores, so it must write back their lines: the
// lines it reports are exactly those of the plain-stored bytes. (Mutants:
// the head's write-back dropped; the tail's skipped whenever the head is
// unaligned, though it lies in another line.) The append path stores only
// 8-byte aligned ranges; any other caller of the Mapping's StoreNT relies
// on this.
func TestReview6MutCopyNTWritesBackHeadAndTail(t *testing.T) {
	if defaultFlush() == flushMsync {
		t.Skip("portable build: copyNT msyncs")
	}
	mem := flushMapping(t, 4*cacheLine+8192)
	src := make([]byte, 4096)
	for i := range src {
		src[i] = byte(i*7 + 1)
	}
	h := hw{flush: defaultFlush(), ntMin: 0}
	base := uintptr(unsafe.Pointer(&mem[0]))
	for da := 0; da < 2*cacheLine; da++ {
		for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 56, 57, 63, 64, 65, 100, 127, 128, 129, 160, 161, 200, 1000, 4095} {
			dst := unsafe.Pointer(&mem[cacheLine+da])
			got, err := h.copyNT(dst, unsafe.Pointer(&src[0]), uintptr(n))
			drain()
			if err != nil {
				t.Fatal(err)
			}
			a := base + uintptr(cacheLine+da)
			e := a + uintptr(n)
			lines := map[uintptr]bool{}
			for b := a; b < e; b++ { // the bytes storeNT stores plainly
				if b < (a+7)&^7 || b >= e&^7 || (a+7)&^7 > e&^7 {
					lines[b&^(cacheLine-1)] = true
				}
			}
			if got != len(lines) {
				t.Fatalf("copyNT of %d bytes to an address %d mod 64: %d lines written back, the plain-stored head and tail are in %d", n, a%64, got, len(lines))
			}
			if !bytes.Equal(mem[cacheLine+da:cacheLine+da+n], src[:n]) {
				t.Fatalf("copyNT of %d bytes at %d mod 64: copy differs", n, a%64)
			}
		}
	}
}

// TestReview6MutFlushStaysInRange: flushRange of a range that ends at the
// last byte before an inaccessible page must write back its lines and
// touch nothing beyond them. (Mutant: the CLWB loop steps 128 bytes, so it
// writes back every other line, and runs off the range.) Run over every
// flush instruction the CPU has.
func TestReview6MutFlushStaysInRange(t *testing.T) {
	if defaultFlush() == flushMsync {
		t.Skip("portable build: flushes are msyncs")
	}
	const size = 64 << 10
	mem, err := unix.Mmap(-1, 0, size+int(pageSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	if err := unix.Mprotect(mem[size:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	for i := range mem[:size] {
		mem[i] = byte(i)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	for _, k := range []int{flushCLWB, flushCLFLUSHOPT, flushCLFLUSH} {
		if !flushSupported(k) {
			continue
		}
		h := hw{flush: k, ntMin: -1}
		for _, r := range [][2]int{{0, size}, {size - 64, 64}, {size - 1, 1}, {size - 200, 200}, {8, size - 8}} {
			var n int
			func() {
				defer func() {
					if e := recover(); e != nil {
						t.Fatalf("%s: flushRange(%d, %d) faulted beyond its range: %v", flushNames[k], r[0], r[1], e)
					}
				}()
				n, err = h.flushRange(unsafe.Pointer(&mem[r[0]]), uintptr(r[1]))
				drain()
			}()
			if _, want := lineSpan(uintptr(unsafe.Pointer(&mem[r[0]])), uintptr(r[1])); err != nil || n != int(want) {
				t.Fatalf("%s: flushRange(%d, %d) = %d, %v; want %d lines", flushNames[k], r[0], r[1], n, err, want)
			}
		}
	}
	for i := range mem[:size] {
		if mem[i] != byte(i) {
			t.Fatalf("byte %d changed by a flush", i)
		}
	}
}

// TestReview6MutCPUFeaturesMatchTheKernel: the flush instructions the
// library finds with CPUID are the ones the kernel reports, and it prefers
// CLWB, then CLFLUSHOPT, then CLFLUSH. (Mutants: the CLWB bit read from the
// wrong CPUID bit, which on a CPU with that bit but no CLWB executes an
// invalid instruction; the preference order reversed.)
func TestReview6MutCPUFeaturesMatchTheKernel(t *testing.T) {
	if defaultFlush() == flushMsync {
		t.Skip("portable build: no cache-line instructions")
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skip("no /proc/cpuinfo")
	}
	var flags map[string]bool
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			flags = map[string]bool{}
			for _, f := range strings.Fields(v) {
				flags[f] = true
			}
			break
		}
	}
	if flags == nil {
		t.Skip("no flags line in /proc/cpuinfo")
	}
	if got, want := flushSupported(flushCLWB), flags["clwb"]; got != want {
		t.Errorf("CLWB supported: CPUID says %v, the kernel %v", got, want)
	}
	if got, want := flushSupported(flushCLFLUSHOPT), flags["clflushopt"]; got != want {
		t.Errorf("CLFLUSHOPT supported: CPUID says %v, the kernel %v", got, want)
	}
	if got, want := flushSupported(flushCLFLUSH), flags["clflush"]; got != want {
		t.Errorf("CLFLUSH supported: CPUID says %v, the kernel %v", got, want)
	}
	want := flushMsync
	switch {
	case flags["clwb"]:
		want = flushCLWB
	case flags["clflushopt"]:
		want = flushCLFLUSHOPT
	case flags["clflush"]:
		want = flushCLFLUSH
	}
	if got := defaultFlush(); got != want {
		t.Errorf("defaultFlush() = %s, want %s", flushNames[got], flushNames[want])
	}
}

// TestReview6MutPortableEADRKeepsMsync: on the portable build every flush
// is an msync, and eADR (from sysfs or WAL_EADR) must not turn it off:
// there is no cache-line flush it could be replacing. (Mutant: eADR sets
// flushNone on every build, so the portable path's appends in
// PersistCacheFlush or PersistDAX mode persist nothing.)
func TestReview6MutPortableEADRKeepsMsync(t *testing.T) {
	if defaultFlush() != flushMsync {
		t.Skip("not the portable build")
	}
	t.Setenv("WAL_FLUSH", "")
	t.Setenv("WAL_NT_THRESHOLD", "")
	root := t.TempDir()
	dir := filepath.Join(root, "bus/nd/devices/region0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "persistence_domain"), []byte("cpu_cache\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"", "1"} {
		t.Setenv("WAL_EADR", env)
		h, err := resolveHW(root)
		if err != nil {
			t.Fatal(err)
		}
		if !h.eadr || h.flush != flushMsync {
			t.Fatalf("WAL_EADR=%q with a cpu_cache region: eadr %v, flush %s; want eadr and msync", env, h.eadr, flushNames[h.flush])
		}
	}
}

// TestReview6MutTailerAfterTruncateBack: a tailer that has returned no
// record is not affected by an earlier TruncateBack: it returns the record
// at its position once one is appended there. (Mutant: the check that a
// TruncateBack removed the record the tailer last returned runs for a
// tailer that has returned nothing, so it gets ErrNotFound.)
func TestReview6MutTailerAfterTruncateBack(t *testing.T) {
	l := r6mOpen(t, PersistCacheFlush)
	for i := 1; i <= 10; i++ {
		if _, err := l.Append(fmt.Appendf(nil, "old %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	early := l.Tail(8) // made before the cut, has returned nothing
	if err := l.TruncateBack(5); err != nil {
		t.Fatal(err)
	}
	late := l.Tail(8) // made after the cut, past the end
	for i := 6; i <= 10; i++ {
		if idx, err := l.Append(fmt.Appendf(nil, "new %d", i)); err != nil || idx != uint64(i) {
			t.Fatalf("Append = %d, %v; want %d", idx, err, i)
		}
	}
	for name, tl := range map[string]*Tailer{"made before the cut": early, "made after the cut": late} {
		idx, rec, err := tl.Next(context.Background(), nil)
		if err != nil || idx != 8 || string(rec) != "new 8" {
			t.Fatalf("tailer at 8 %s: Next = %d, %q, %v; want 8, \"new 8\"", name, idx, rec, err)
		}
	}
}

// TestReview6MutReadRefusesMisplacedRecord: a record whose bytes verify
// but whose header names another index (here a copy of record 2 over
// record 1, of the same size) must not be returned as record 1: Read,
// iteration and tailing say ErrCorrupt. (Mutant: borrow checks only the
// checksum, which the copy passes, and returns record 2's payload as
// record 1.)
func TestReview6MutReadRefusesMisplacedRecord(t *testing.T) {
	l := r6mOpen(t, PersistCacheFlush)
	for _, s := range []string{"first record", "other record"} {
		if _, err := l.Append([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	seg := l.segs[0]
	o1, o2 := int(seg.offs.At(0)), int(seg.offs.At(1))
	n := recSize(len("first record"))
	copy(seg.mem[o1:o1+n], seg.mem[o2:o2+n])
	if got, err := l.Read(1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read(1) of a copy of record 2 = %q, %v; want ErrCorrupt", got, err)
	}
	it := l.Records(1)
	for idx, rec := range it.All() {
		t.Fatalf("iteration yielded %d: %q", idx, rec)
	}
	if !errors.Is(it.Err(), ErrCorrupt) {
		t.Fatalf("iteration: %v; want ErrCorrupt", it.Err())
	}
	if idx, rec, err := l.Tail(1).Next(context.Background(), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Tail(1).Next = %d, %q, %v; want ErrCorrupt", idx, rec, err)
	}
}
