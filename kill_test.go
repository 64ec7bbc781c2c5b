package wal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Process-kill crash tests. A child process (this test binary re-executed
// as TestKillChild) appends to a log from several goroutines as fast as it
// can, single records and batches, and reports every acknowledged index
// over a pipe. The parent kills it with SIGKILL at a random moment, reopens
// the log itself and checks it against what was acknowledged:
//
//   - every acknowledged record is present at its index, byte for byte;
//   - the log is exactly FirstIndex()==1 .. LastIndex(), every index readable;
//   - every record is a payload some child wrote (the payload names its id,
//     its batch and its length, and the rest is a deterministic fill), no
//     id appears twice, and a record the parent has not seen before was
//     written by the incarnation just killed (a dropped record never
//     comes back);
//   - every batch is present whole (consecutive indexes) or not at all;
//   - nothing the parent verified in an earlier round has changed.
//
// Then it closes the log and starts the next child on the same directory.
// The kill schedule comes from a fixed PCG seed (PMWAL_KILL_SEED overrides
// it); process timing still varies from run to run. Helpers are prefixed
// kill.

const (
	killEnvDir     = "PMWAL_KILL_CHILD_DIR"
	killEnvPersist = "PMWAL_KILL_CHILD_PERSIST"
	killEnvSeed    = "PMWAL_KILL_CHILD_SEED"
	killEnvInc     = "PMWAL_KILL_CHILD_INC"

	killSegSize = 1 << 20
	killWorkers = 4

	// Payload header: magic, length, id, batch base id, position in the
	// batch, batch size. Payloads shorter than the header carry no id: they
	// are a fixed pattern of their length, and are only appended singly.
	killHdrSize  = 28
	killMagic    = 0x4c4c494b // "KILL"
	killMaxBatch = 8

	// A log directory is replaced by a fresh one after this many kills or
	// this many payload bytes, so that the log (never truncated) and the
	// parent's re-verification of it stay bounded.
	killMaxKillsPerDir = 25
	killMaxBytesPerDir = 24 << 20
)

// killHashSeed makes the parent's record fingerprints comparable across
// rounds of one test.
var killHashSeed = maphash.MakeSeed()

// killRec is what a payload says about itself: enough to rebuild it.
type killRec struct {
	id     uint64 // incarnation<<32 | counter; 0 for a short payload
	base   uint64 // id of the batch's first record (id itself for a single record)
	length int
	pos    int // position in the batch
	size   int // records in the batch (1 for a single record)
}

func (r killRec) String() string {
	if r.length < killHdrSize {
		return fmt.Sprintf("short payload of %d bytes", r.length)
	}
	return fmt.Sprintf("id %#x (incarnation %d), %d bytes, batch %#x record %d of %d", r.id, r.id>>32, r.length, r.base, r.pos+1, r.size)
}

// killPayload appends to dst[:0] the payload described by r.
func killPayload(dst []byte, r killRec) []byte {
	dst = append(dst[:0], make([]byte, r.length)...)
	if r.length < killHdrSize {
		for i := range dst {
			dst[i] = byte(0xa5 ^ (r.length*29 + i*7))
		}
		return dst
	}
	binary.LittleEndian.PutUint32(dst[0:], killMagic)
	binary.LittleEndian.PutUint32(dst[4:], uint32(r.length))
	binary.LittleEndian.PutUint64(dst[8:], r.id)
	binary.LittleEndian.PutUint64(dst[16:], r.base)
	binary.LittleEndian.PutUint16(dst[24:], uint16(r.pos))
	binary.LittleEndian.PutUint16(dst[26:], uint16(r.size))
	killFill(dst[killHdrSize:], r.id)
	return dst
}

// killFill fills b with the deterministic stream of id.
func killFill(b []byte, id uint64) {
	var p rand.PCG
	p.Seed(id, 0x6b696c6c2d66696c)
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, p.Uint64())
		b = b[8:]
	}
	if len(b) > 0 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], p.Uint64())
		copy(b, w[:])
	}
}

// killDecode says which payload b is, or why it is none a child wrote.
// scratch is reused to rebuild the payload and compare.
func killDecode(b []byte, scratch *[]byte) (killRec, error) {
	n := len(b)
	var r killRec
	if n < killHdrSize {
		r = killRec{length: n, size: 1}
	} else {
		if m := binary.LittleEndian.Uint32(b[0:]); m != killMagic {
			return r, fmt.Errorf("%d bytes with magic %#x, not %#x", n, m, killMagic)
		}
		r = killRec{
			length: int(binary.LittleEndian.Uint32(b[4:])),
			id:     binary.LittleEndian.Uint64(b[8:]),
			base:   binary.LittleEndian.Uint64(b[16:]),
			pos:    int(binary.LittleEndian.Uint16(b[24:])),
			size:   int(binary.LittleEndian.Uint16(b[26:])),
		}
		switch {
		case r.length != n:
			return r, fmt.Errorf("%d bytes, but the payload header says %d", n, r.length)
		case r.size < 1 || r.size > killMaxBatch || r.pos >= r.size || r.id != r.base+uint64(r.pos) || r.id>>32 == 0:
			return r, fmt.Errorf("inconsistent payload header: %v", r)
		}
	}
	*scratch = killPayload(*scratch, r)
	if !bytes.Equal(b, *scratch) {
		i := 0
		for i < n && b[i] == (*scratch)[i] {
			i++
		}
		return r, fmt.Errorf("%v: byte %d is %#x, the payload has %#x there", r, i, b[i], (*scratch)[i])
	}
	return r, nil
}

// killLen picks a payload length: mostly 28..2000 bytes, sometimes empty or
// short (singles only), sometimes up to 16 KiB.
func killLen(rng *rand.Rand, single bool) int {
	x := rng.IntN(100)
	switch {
	case single && x < 3:
		return 0
	case single && x < 8:
		return 1 + rng.IntN(killHdrSize-1)
	case x >= 98:
		return 2001 + rng.IntN(14000)
	}
	return killHdrSize + rng.IntN(2001-killHdrSize)
}

// TestKillChild is the child process of TestKillCacheFlush and
// TestKillMsync. It opens the log in $PMWAL_KILL_CHILD_DIR, says
// "ready <first> <last>" on file descriptor 3, then appends from
// killWorkers goroutines until it is killed, writing
// "ack <index> <id> <len> <base> <pos> <size>" on descriptor 3 for every
// record of every call that returned successfully. It exits by itself if
// its standard input (a pipe from the parent) closes.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(killEnvDir)
	if dir == "" {
		t.Skip("runs only as the child of TestKillCacheFlush and TestKillMsync")
	}
	os.Unsetenv("WAL_PERSIST") // the parent removed it too: Options.Persist rules
	out := os.NewFile(3, "acks")
	die := func(format string, args ...any) {
		fmt.Fprintf(out, "err "+format+"\n", args...)
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(2)
	}
	mode, err := ParsePersist(os.Getenv(killEnvPersist))
	if err != nil {
		die("%v", err)
	}
	seed, err1 := strconv.ParseUint(os.Getenv(killEnvSeed), 10, 64)
	inc, err2 := strconv.ParseUint(os.Getenv(killEnvInc), 10, 32)
	if err := errors.Join(err1, err2); err != nil || inc == 0 {
		die("bad seed or incarnation: %v", err)
	}
	// Never outlive the parent.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
	time.AfterFunc(3*time.Minute, func() { os.Exit(4) })

	l, err := Open(dir, &Options{SegmentSize: killSegSize, Persist: mode})
	if err != nil {
		die("Open: %v", err)
	}
	if l.Persist() != mode {
		die("Persist() = %v, want %v", l.Persist(), mode)
	}
	var mu sync.Mutex // one write per acknowledged call, never interleaved
	w := bufio.NewWriterSize(out, 16<<10)
	fmt.Fprintf(w, "ready %d %d\n", l.FirstIndex(), l.LastIndex())
	if err := w.Flush(); err != nil {
		die("writing to the parent: %v", err)
	}
	var counter atomic.Uint64
	for g := range killWorkers {
		go func() {
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			bufs := make([][]byte, killMaxBatch)
			var line []byte
			for {
				var recs []killRec
				if rng.IntN(4) == 0 {
					n := 2 + rng.IntN(killMaxBatch-1)
					base := inc<<32 | (counter.Add(uint64(n)) - uint64(n) + 1)
					for i := range n {
						recs = append(recs, killRec{id: base + uint64(i), base: base, length: killLen(rng, false), pos: i, size: n})
					}
				} else {
					id := inc<<32 | counter.Add(1)
					recs = append(recs, killRec{id: id, base: id, length: killLen(rng, true), size: 1})
				}
				if counter.Load() >= 1<<32-killMaxBatch {
					die("id counter exhausted")
				}
				batch := bufs[:len(recs)]
				for i, r := range recs {
					bufs[i] = killPayload(bufs[i], r)
				}
				var first uint64
				var err error
				if len(recs) == 1 {
					first, err = l.Append(batch[0])
				} else {
					first, err = l.AppendBatch(batch)
				}
				if err != nil {
					die("append of %d records (first %v): %v", len(recs), recs[0], err)
				}
				// Acknowledged: report every record of the call.
				line = line[:0]
				for i, r := range recs {
					line = fmt.Appendf(line, "ack %d %x %d %x %d %d\n", first+uint64(i), r.id, r.length, r.base, r.pos, r.size)
				}
				mu.Lock()
				w.Write(line)
				err = w.Flush()
				mu.Unlock()
				if err != nil {
					die("writing to the parent: %v", err)
				}
			}
		}()
	}
	select {}
}

// killAck is one acknowledged record as the child reported it.
type killAck struct {
	index uint64
	rec   killRec
}

// killChildResult is what the parent learned from one child.
type killChildResult struct {
	ready        bool
	readyFirst   uint64
	readyLast    uint64
	acks         []killAck
	partial      bool     // the last line was cut off by the kill
	problems     []string // error reports and malformed lines
	waitErr      error
	signaled     bool
	stderr       string
	early        bool          // killed at a random moment after the start, ready or not
	sinceReady   time.Duration // time from "ready" to the kill
	startToReady time.Duration
}

// killParseAck parses "ack <index> <id> <len> <base> <pos> <size>".
func killParseAck(line string) (killAck, error) {
	f := strings.Fields(line)
	if len(f) != 7 || f[0] != "ack" {
		return killAck{}, fmt.Errorf("malformed line %q", line)
	}
	var v [6]uint64
	for i, base := range []int{10, 16, 10, 16, 10, 10} {
		x, err := strconv.ParseUint(f[i+1], base, 64)
		if err != nil {
			return killAck{}, fmt.Errorf("malformed line %q: %v", line, err)
		}
		v[i] = x
	}
	return killAck{index: v[0], rec: killRec{id: v[1], length: int(v[2]), base: v[3], pos: int(v[4]), size: int(v[5])}}, nil
}

// killEnviron is this process's environment without WAL_PERSIST and
// without any earlier child variables.
func killEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WAL_PERSIST=") || strings.HasPrefix(kv, "PMWAL_KILL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// killChild runs one incarnation on dir: start the child, wait for it to be
// ready (unless early), wait delay, SIGKILL it, and collect its acks.
func killChild(dir string, mode Persist, inc, seed uint64, early bool, delay time.Duration) (res killChildResult, err error) {
	res.early = early
	r, w, err := os.Pipe()
	if err != nil {
		return res, err
	}
	defer r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(killEnviron(),
		killEnvDir+"="+dir,
		killEnvPersist+"="+mode.String(),
		killEnvSeed+"="+strconv.FormatUint(seed, 10),
		killEnvInc+"="+strconv.FormatUint(inc, 10))
	cmd.ExtraFiles = []*os.File{w}
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		w.Close()
		return res, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		w.Close()
		return res, err
	}
	w.Close()
	defer stdin.Close()

	ready := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() { // owns res.acks, res.problems, res.partial, res.ready* until done
		defer close(done)
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				res.partial = line != ""
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case strings.HasPrefix(line, "ack "):
				a, perr := killParseAck(line)
				if perr != nil {
					res.problems = append(res.problems, perr.Error())
					continue
				}
				res.acks = append(res.acks, a)
			case strings.HasPrefix(line, "ready "):
				if _, perr := fmt.Sscanf(line, "ready %d %d", &res.readyFirst, &res.readyLast); perr != nil {
					res.problems = append(res.problems, fmt.Sprintf("malformed line %q", line))
				}
				res.ready = true
				ready <- time.Now()
			default:
				res.problems = append(res.problems, "child: "+line)
			}
		}
	}()

	var readyAt time.Time
	if early {
		time.Sleep(delay)
	} else {
		select {
		case readyAt = <-ready:
			res.startToReady = readyAt.Sub(start)
			time.Sleep(delay)
		case <-done:
			// The child exited (or closed its pipe) before it was ready.
		case <-time.After(2 * time.Minute):
			res.problems = append(res.problems, "child not ready after 2 minutes")
		}
	}
	killedAt := time.Now()
	if !readyAt.IsZero() {
		res.sinceReady = killedAt.Sub(readyAt)
	}
	cmd.Process.Kill() // SIGKILL
	res.waitErr = cmd.Wait()
	<-done
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		res.signaled = true
	}
	res.stderr = stderr.String()
	return res, nil
}

// killKnown is a record the parent has verified: its fingerprint, so a
// later round can tell it is unchanged without rebuilding it.
type killKnown struct {
	sum    uint64
	length int
	id     uint64
}

// killLog is the parent's oracle for one log directory, carried across
// incarnations.
type killLog struct {
	dir   string
	kills int
	known []killKnown       // known[i] is the record at index i+1
	bytes int64             // payload bytes in known
	ids   map[uint64]uint64 // id -> index, every id-carrying record in the log
}

// killStats are the test's totals.
type killStats struct {
	kills, early, dirs   int
	acked, ackedRecheck  int64         // acks verified at their index; re-verified records
	keptUnacked          int64         // records kept by recovery that were never acknowledged
	tornTails, dropped   int64         // recovery reports
	partialLines, noAcks int           // noAcks: children killed after ready that acknowledged nothing
	earlyBeforeReady     int           // early kills that came before the child said ready
	verifyTime           time.Duration // the parent's reopen and checks
	records              int64         // records appended that the parent verified (acked or not)
}

// verify opens the log after a kill and checks it (see the top of the
// file). It returns the violations found (the first 40) and, if there are
// any, what recovery reported.
func (lg *killLog) verify(mode Persist, inc uint64, res *killChildResult, st *killStats) (violations []string) {
	bad := func(format string, args ...any) {
		if len(violations) < 40 {
			violations = append(violations, fmt.Sprintf(format, args...))
		}
	}
	l, err := Open(lg.dir, &Options{SegmentSize: killSegSize, Persist: mode})
	if err != nil {
		bad("Open after the kill: %v", err)
		return violations
	}
	defer func() {
		if err := l.Close(); err != nil {
			bad("Close: %v", err)
		}
	}()
	rep := l.Recovery()
	if rep.TornTail {
		st.tornTails++
	}
	st.dropped += int64(rep.DroppedRecords)
	defer func() {
		if len(violations) > 0 {
			violations = append(violations, fmt.Sprintf("recovery report: %+v", rep))
		}
	}()

	first, last := l.FirstIndex(), l.LastIndex()
	prev := uint64(len(lg.known))
	if first != 1 {
		bad("FirstIndex() = %d, want 1", first)
	}
	if last < prev {
		bad("LastIndex() = %d, but the parent verified records 1..%d before this incarnation: the log lost them", last, prev)
	}
	if res.ready && (res.readyFirst != 1 || res.readyLast != prev) {
		bad("the child opened the log as %d..%d, the parent had verified 1..%d", res.readyFirst, res.readyLast, prev)
	}
	if _, err := l.Read(0); !errors.Is(err, ErrNotFound) {
		bad("Read(0) = %v, want ErrNotFound", err)
	}
	if _, err := l.Read(last + 1); !errors.Is(err, ErrNotFound) {
		bad("Read(LastIndex()+1 = %d) = %v, want ErrNotFound", last+1, err)
	}

	// Records verified in earlier rounds must be unchanged.
	for i := uint64(1); i <= min(prev, last); i++ {
		b, err := l.Read(i)
		k := lg.known[i-1]
		switch {
		case err != nil:
			bad("index %d (verified in an earlier round, %d bytes): Read: %v", i, k.length, err)
		case len(b) != k.length || maphash.Bytes(killHashSeed, b) != k.sum:
			bad("index %d changed since an earlier round verified it: expected %d bytes (id %#x), got %d bytes", i, k.length, k.id, len(b))
		default:
			st.ackedRecheck++
		}
	}

	// New records: what they are, and that batches are whole.
	var scratch []byte
	var open *killRec // a batch whose later records have not been seen yet
	newRecs := make(map[uint64]killRec)
	for i := prev + 1; i <= last; i++ {
		b, err := l.Read(i)
		if err != nil {
			bad("index %d (in 1..%d): Read: %v", i, last, err)
			lg.known = append(lg.known, killKnown{length: -1})
			continue
		}
		lg.known = append(lg.known, killKnown{sum: maphash.Bytes(killHashSeed, b), length: len(b)})
		lg.bytes += int64(len(b))
		r, err := killDecode(b, &scratch)
		if err != nil {
			bad("index %d: not a payload any child wrote: %v", i, err)
			continue
		}
		newRecs[i] = r
		st.records++
		lg.known[i-1].id = r.id
		if r.id != 0 {
			if j, dup := lg.ids[r.id]; dup {
				bad("index %d: %v is also at index %d", i, r, j)
			}
			lg.ids[r.id] = i
			if r.id>>32 != inc {
				bad("index %d: %v was not written by incarnation %d, the one just killed: a record dropped earlier came back, or an old one was duplicated", i, r, inc)
			}
		}
		if open != nil {
			if r.id == 0 || r.base != open.base || r.size != open.size || r.pos != open.pos+1 {
				bad("index %d: batch %#x kept only up to record %d of %d (index %d), then %v", i, open.base, open.pos+1, open.size, i-1, r)
			}
		} else if r.pos != 0 {
			bad("index %d: %v, but record %d of its batch is not at index %d", i, r, r.pos, i-1)
		}
		open = nil
		if r.pos+1 < r.size {
			open = &r
		}
	}
	if open != nil {
		bad("the log ends at index %d inside batch %#x: only %d of its %d records were kept", last, open.base, open.pos+1, open.size)
	}

	// Every acknowledged record, at its index, byte for byte.
	acked := make(map[uint64]bool, len(res.acks))
	for _, a := range res.acks {
		if a.index <= prev {
			bad("the child acknowledged index %d (%v), but the log already held 1..%d when it started", a.index, a.rec, prev)
			continue
		}
		if acked[a.index] {
			bad("index %d acknowledged twice", a.index)
		}
		acked[a.index] = true
		if a.index > last {
			bad("acknowledged index %d lost: expected %v, the log ends at %d", a.index, a.rec, last)
			continue
		}
		got, ok := newRecs[a.index]
		if !ok {
			continue // reported above
		}
		want := a.rec
		if want.length < killHdrSize {
			want = killRec{length: want.length, size: 1} // a short payload carries no id
		}
		if got != want {
			bad("acknowledged index %d: expected %v, got %v (expected %d bytes, got %d)", a.index, a.rec, got, a.rec.length, got.length)
			continue
		}
		st.acked++
	}
	for i := prev + 1; i <= last; i++ {
		if !acked[i] {
			st.keptUnacked++
		}
	}
	return violations
}

// killRun performs kills incarnations in fresh directories under base.
func killRun(t *testing.T, mode Persist, base string, kills int) {
	t.Setenv("WAL_PERSIST", "") // the parent's own Open: Options.Persist rules
	seed := uint64(0x6b696c6c) + uint64(mode)
	if s := os.Getenv("PMWAL_KILL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("PMWAL_KILL_SEED=%q: %v", s, err)
		}
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, 0x7061726e74))
	var st killStats
	var lg *killLog
	var readyTotal time.Duration
	readyAvg := 50 * time.Millisecond // running average of start to ready, for early kills
	started := time.Now()
	for inc := uint64(1); inc <= uint64(kills); inc++ {
		if lg == nil || lg.kills >= killMaxKillsPerDir || lg.bytes >= killMaxBytesPerDir {
			if lg != nil {
				if err := os.RemoveAll(lg.dir); err != nil {
					t.Fatal(err)
				}
			}
			dir, err := os.MkdirTemp(base, "log-")
			if err != nil {
				t.Fatal(err)
			}
			lg = &killLog{dir: dir, ids: make(map[uint64]uint64)}
			st.dirs++
		}
		childSeed := rng.Uint64()
		// Mostly kill 5..60 ms after the child is ready; sometimes (and
		// often on a fresh directory) at a random moment from its start to
		// a little after it is usually ready, so that some kills land in
		// Open: while it creates the log or recovers it.
		early := rng.IntN(10) == 0 || (lg.kills == 0 && rng.IntN(2) == 0)
		delay := time.Duration(5+rng.IntN(56)) * time.Millisecond
		if early {
			delay = time.Duration(rng.Float64() * 1.2 * float64(readyAvg))
		}
		killNo := lg.kills + 1
		where := func() string {
			return fmt.Sprintf("%v, seed %d (PMWAL_KILL_SEED), incarnation %d (kill %d on %s, early %v, delay %v)",
				mode, seed, inc, killNo, lg.dir, early, delay)
		}
		res, err := killChild(lg.dir, mode, inc, childSeed, early, delay)
		if err != nil {
			t.Fatalf("%s: starting the child: %v", where(), err)
		}
		lg.kills++
		st.kills++
		if early {
			st.early++
		}
		if res.partial {
			st.partialLines++
		}
		if len(res.acks) == 0 && !early {
			st.noAcks++
		}
		if early && !res.ready {
			st.earlyBeforeReady++
		}
		if res.startToReady > 0 {
			readyTotal += res.startToReady
			readyAvg = (readyAvg*7 + res.startToReady) / 8
		}
		if !res.signaled || len(res.problems) > 0 || (!early && !res.ready) {
			t.Fatalf("%s: the child did not run until killed: wait: %v, ready %v\nreports: %s\nstderr: %s",
				where(), res.waitErr, res.ready, strings.Join(res.problems, "\n"), killTrim(res.stderr))
		}
		vstart := time.Now()
		v := lg.verify(mode, inc, &res, &st)
		st.verifyTime += time.Since(vstart)
		if len(v) > 0 {
			maxAck := uint64(0)
			for _, a := range res.acks {
				maxAck = max(maxAck, a.index)
			}
			t.Fatalf("%s: killed %v after the child was ready (ready %v, started 1..%d); %d acks from it, the highest index %d:\n%s",
				where(), res.sinceReady, res.ready, res.readyLast, len(res.acks), maxAck, strings.Join(v, "\n"))
		}
	}
	if lg != nil {
		os.RemoveAll(lg.dir)
	}
	elapsed := time.Since(started)
	t.Logf("%v: %d kills (%d early, %d of them before the child was ready) in %d log directories in %v: %.0f ms per kill, child start to ready %.0f ms on average, parent reopen and checks %v in all",
		mode, st.kills, st.early, st.earlyBeforeReady, st.dirs, elapsed.Round(time.Millisecond),
		float64(elapsed.Milliseconds())/float64(max(st.kills, 1)), float64(readyTotal.Milliseconds())/float64(max(st.kills-st.earlyBeforeReady, 1)),
		st.verifyTime.Round(time.Millisecond))
	t.Logf("%v: %d acknowledged records verified at their index, %d unacknowledged records kept by recovery, %d records verified in all, %d re-verified in later rounds",
		mode, st.acked, st.keptUnacked, st.records, st.ackedRecheck)
	t.Logf("%v: recovery found a torn tail %d times and dropped %d complete-looking records; %d kills cut an ack line; %d children killed 5..60 ms after ready acknowledged nothing",
		mode, st.tornTails, st.dropped, st.partialLines, st.noAcks)
	if st.acked == 0 {
		t.Fatalf("%v, seed %d: no acknowledged record was verified in %d kills: the test proved nothing", mode, seed, st.kills)
	}
}

// killTrim keeps the start of a child's stderr, where a panic is reported.
func killTrim(s string) string {
	if len(s) > 6000 {
		return s[:6000] + "\n...(truncated)"
	}
	return s
}

// TestKillCacheFlush kills a child appending with PersistCacheFlush on
// /dev/shm at least 200 times (30 with -short).
func TestKillCacheFlush(t *testing.T) {
	base, err := os.MkdirTemp("/dev/shm", "pmwal-kill-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	kills := 200
	if testing.Short() {
		kills = 30
	}
	killRun(t, PersistCacheFlush, base, kills)
}

// TestKillMsync kills a child appending with PersistMsync on the test's
// temporary directory (a disk file system) 20 times (8 with -short).
func TestKillMsync(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 8
	}
	killRun(t, PersistMsync, t.TempDir(), kills)
}
