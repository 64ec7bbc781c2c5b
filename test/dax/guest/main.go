// Command pmwal-dax-guest runs inside the DAX guest of test/dax/run, on an
// ext4 filesystem mounted with -o dax on an emulated NVDIMM. Every line
// meant for the host starts with "PMWAL " and goes to standard output (the
// serial console).
//
//	pmwal-dax-guest probe DIR
//	    checks that DIR really is DAX: a file there maps with
//	    MAP_SHARED_VALIDATE|MAP_SYNC, statx reports STATX_ATTR_DAX, a log
//	    opened with PersistAuto reports PersistDAX and one opened with
//	    PersistDAX opens. Exits non-zero otherwise.
//	pmwal-dax-guest check -dir D -seed S -inc N
//	    opens the power-cut log (recovery), verifies every record it kept
//	    and reports what it holds, for the host's oracle.
//	pmwal-dax-guest append -dir D -seed S -inc N
//	    appends single records and batches to the power-cut log with
//	    PersistDAX until the power is cut, reporting acknowledged indexes.
package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pmwal/wal"
	"github.com/pmwal/wal/test/dax/daxcut"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "probe":
		if len(os.Args) != 3 {
			usage()
		}
		err = probe(os.Args[2])
	case "check", "append":
		dir, seed, inc := flags(os.Args[2:])
		if os.Args[1] == "check" {
			err = check(dir, seed, inc)
		} else {
			err = appendLoop(dir, seed, inc)
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Printf("PMWAL ERROR %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: pmwal-dax-guest probe DIR | check|append -dir D -seed S -inc N")
	os.Exit(2)
}

func flags(args []string) (dir string, seed uint64, inc uint32) {
	for i := 0; i+1 < len(args); i += 2 {
		v := args[i+1]
		switch args[i] {
		case "-dir":
			dir = v
		case "-seed":
			s, err := strconv.ParseUint(v, 0, 64)
			if err != nil {
				usage()
			}
			seed = s
		case "-inc":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				usage()
			}
			inc = uint32(n)
		default:
			usage()
		}
	}
	if dir == "" || inc == 0 {
		usage()
	}
	return dir, seed, inc
}

// probe proves that dir is on a DAX filesystem that honours MAP_SYNC, and
// that the library sees it so.
func probe(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, "probe-file")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 1<<21); err != nil {
		return fmt.Errorf("fallocate: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 1<<21, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED_VALIDATE|unix.MAP_SYNC)
	if err != nil {
		return fmt.Errorf("mmap MAP_SHARED_VALIDATE|MAP_SYNC on %s: %w", dir, err)
	}
	mem[0] = 1
	unix.Munmap(mem)
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BASIC_STATS, &st); err != nil {
		return fmt.Errorf("statx: %w", err)
	}
	if st.Attributes_mask&unix.STATX_ATTR_DAX == 0 || st.Attributes&unix.STATX_ATTR_DAX == 0 {
		return fmt.Errorf("statx of %s: STATX_ATTR_DAX not set (attributes %#x, mask %#x)", path, st.Attributes, st.Attributes_mask)
	}
	fmt.Printf("PMWAL PROBE mmap MAP_SHARED_VALIDATE|MAP_SYNC ok, statx STATX_ATTR_DAX set on %s\n", path)

	for _, mode := range []wal.Persist{wal.PersistAuto, wal.PersistDAX} {
		ldir := filepath.Join(dir, "probe-log-"+mode.String())
		l, err := wal.Open(ldir, &wal.Options{Persist: mode, SegmentSize: 1 << 20})
		if err != nil {
			return fmt.Errorf("wal.Open with %v: %w", mode, err)
		}
		idx, aerr := l.Append([]byte("probe"))
		got := l.Persist()
		s := l.Stats()
		cerr := l.Close()
		os.RemoveAll(ldir)
		if err := errors.Join(aerr, cerr); err != nil {
			return fmt.Errorf("log with %v: %w", mode, err)
		}
		if got != wal.PersistDAX || idx != 1 {
			return fmt.Errorf("wal.Open with %v: Persist() = %v (want dax), append index %d", mode, got, idx)
		}
		fmt.Printf("PMWAL PROBE asked %v, Persist() = %v; flush %s, eADR %v, NT threshold %d (%s), CPU %s; %d fences, %d lines flushed, %d syncs for one append\n",
			mode, got, s.Hardware.Flush, s.Hardware.EADR, s.Hardware.NTThreshold, s.Hardware.NTStores, s.Hardware.CPU, s.Fences, s.FlushedLines, s.Syncs)
	}
	return nil
}

// cutOptions are the options of the power-cut log: PersistDAX, so that a
// guest without MAP_SYNC fails instead of testing msync; small segments, so
// that rollovers (file creation, rename, directory fsync) happen often.
var cutOptions = wal.Options{Persist: wal.PersistDAX, SegmentSize: 1 << 20}

// check opens the log (running its recovery), verifies every record and
// prints one CHECK line (see daxcut.Summary) for the host.
func check(dir string, seed uint64, inc uint32) error {
	start := time.Now()
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		fmt.Printf("PMWAL CHECK %s\n", daxcut.Summary{Inc: inc, First: 1, Persist: "none"}.Encode())
		return nil
	}
	os.Unsetenv("WAL_PERSIST")
	l, err := wal.Open(dir, &cutOptions)
	if err != nil {
		return fmt.Errorf("open after the power cut: %w", err)
	}
	defer l.Close()
	rep := l.Recovery()
	s := daxcut.Summary{
		Inc:      inc,
		First:    l.FirstIndex(),
		Last:     l.LastIndex(),
		Persist:  l.Persist().String(),
		Torn:     rep.TornTail,
		Dropped:  rep.DroppedRecords,
		Segments: rep.Segments,
	}
	var v daxcut.Verifier
	v.Seed = seed
	// The zero-copy iterator verifies every record's checksum; Read (which
	// copies) reads the last few again.
	it := l.Records(s.First)
	next := s.First
	for i, b := range it.All() {
		if err := v.Next(i, b); err != nil {
			s.Bad = append(s.Bad, err.Error())
			break
		}
		next = i + 1
	}
	if err := it.Err(); err != nil {
		s.Bad = append(s.Bad, fmt.Sprintf("iterating from %d: %v", next, err))
	}
	var scratch []byte
	for i := max(s.First, s.Last-min(s.Last, 100)+1); i <= s.Last && len(s.Bad) == 0; i++ {
		b, err := l.Read(i)
		if err == nil {
			_, err = daxcut.Decode(b, seed, i, &scratch)
		}
		if err != nil {
			s.Bad = append(s.Bad, fmt.Sprintf("read %d: %v", i, err))
		}
	}
	if err := v.End(s.Last); err != nil {
		s.Bad = append(s.Bad, err.Error())
	}
	s.Runs = v.Runs
	s.Millis = time.Since(start).Milliseconds()
	fmt.Printf("PMWAL CHECK %s\n", s.Encode())
	for _, r := range rep.Reasons {
		fmt.Printf("PMWAL RECOVERY %s\n", strings.ReplaceAll(r, "\n", " "))
	}
	return l.Close()
}

// appendLoop appends until the power is cut. Acknowledgements go out as
// "PMWAL A <index>": every record up to that index is durable (Append
// returns only when it and every earlier record are). A ticker sends the
// highest acknowledged index, so that printing never slows the appends much.
func appendLoop(dir string, seed uint64, inc uint32) error {
	os.Unsetenv("WAL_PERSIST")
	l, err := wal.Open(dir, &cutOptions)
	if err != nil {
		return err
	}
	if l.Persist() != wal.PersistDAX {
		return fmt.Errorf("Persist() = %v, want dax", l.Persist())
	}
	next := l.LastIndex() + 1
	hw := l.Hardware()
	fmt.Printf("PMWAL APPEND-START first=%d flush=%s nt-threshold=%d\n", next, hw.Flush, hw.NTThreshold)
	var acked atomic.Uint64
	go func() {
		sent := uint64(0)
		for {
			time.Sleep(2 * time.Millisecond)
			if a := acked.Load(); a != sent {
				fmt.Printf("PMWAL A %d\n", a)
				sent = a
			}
		}
	}()
	// Each cut adds some 10 MB. Past 400 MB (many cuts on a 1 GiB NVDIMM)
	// the appender slows down rather than fill the filesystem.
	var pause time.Duration
	if l.Stats().BytesUsed > 400<<20 {
		pause = time.Millisecond
	}
	rng := rand.New(rand.NewPCG(seed, uint64(inc)))
	var batch [][]byte
	for {
		n := 1
		if rng.IntN(10) >= 6 {
			n = 2 + rng.IntN(daxcut.MaxBatch-1)
		}
		batch = batch[:0]
		for j := range n {
			rec := daxcut.Rec{Index: next + uint64(j), CallFirst: next, CallSize: uint16(n), Inc: inc, Len: daxcut.Len(rng)}
			batch = append(batch, daxcut.Payload(nil, seed, rec))
		}
		var first uint64
		if n == 1 && rng.IntN(2) == 0 {
			first, err = l.Append(batch[0])
		} else {
			first, err = l.AppendBatch(batch)
		}
		if err != nil {
			return fmt.Errorf("append at %d: %w", next, err)
		}
		if first != next {
			return fmt.Errorf("append returned index %d, want %d (single writer)", first, next)
		}
		next += uint64(n)
		acked.Store(next - 1)
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}
