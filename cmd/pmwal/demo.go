package main

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/pmwal/wal"
)

// runDemo is the library's main job end to end, with no set-up: append
// records, close, reopen and read them back, then tear the last record on
// disk as a crash would and show that recovery drops it and nothing else.
func runDemo(e env) error {
	stdout := e.stdout
	fs := newFlags("demo", "[--dir DIR] [--persist MODE] [--records N] [--keep]",
		"Writes records to a fresh log, reopens it and reads them back, then tears the last\nrecord on disk as a crash would and shows recovery dropping exactly the torn batch.", e.stderr)
	dir := fs.String("dir", "", "log directory, new or empty (default: a new directory under /dev/shm, or the system temporary directory)")
	persist := fs.String("persist", "auto", "persistence: auto, dax, cacheflush or msync")
	records := fs.Int("records", 10000, "records to append")
	keep := fs.Bool("keep", false, "keep the log directory afterwards")
	if _, err := parse(fs, e.args, 0); err != nil {
		return err
	}
	if *records < 11 {
		fs.Usage()
		return fmt.Errorf("%w: --records must be at least 11", errUsage)
	}
	mode, err := wal.ParsePersist(*persist)
	if err != nil {
		return err
	}
	if *dir != "" {
		if err := freshDir(*dir); err != nil {
			return err
		}
	} else {
		base := "/dev/shm"
		if st, err := os.Stat(base); err != nil || !st.IsDir() {
			base = os.TempDir()
		}
		d, err := os.MkdirTemp(base, "pmwal-demo-")
		if err != nil {
			return err
		}
		*dir = d
		if !*keep {
			defer os.RemoveAll(d)
		}
	}
	opts := &wal.Options{SegmentSize: 1 << 20, Persist: mode}
	payload := func(i uint64) []byte { return []byte(fmt.Sprintf("record %d: the quick brown fox", i)) }

	l, err := wal.Open(*dir, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "log directory:    %s\n", *dir)
	hw := l.Hardware()
	fmt.Fprintf(stdout, "persistence path: %s (asked for %s; on persistent memory: flush %s, non-temporal stores from %d bytes)\n", l.Persist(), mode, hw.Flush, hw.NTThreshold)
	start := time.Now()
	n := uint64(*records)
	for i := uint64(1); i <= n-10; i++ {
		if _, err := l.Append(payload(i)); err != nil {
			l.Close()
			return err
		}
	}
	batch := make([][]byte, 0, 10)
	for i := n - 9; i <= n; i++ {
		batch = append(batch, payload(i))
	}
	if _, err := l.AppendBatch(batch); err != nil {
		l.Close()
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "appended:         %d records (%d single, one batch of 10) in %v, %.0f ns per record, each durable before Append returned\n",
		n, n-10, el.Round(time.Microsecond), float64(el.Nanoseconds())/float64(n))
	if err := l.Close(); err != nil {
		return err
	}

	l, err = wal.Open(*dir, opts)
	if err != nil {
		return err
	}
	if err := verify(l, 1, n, payload); err != nil {
		l.Close()
		return err
	}
	segs := segFiles(*dir)
	fmt.Fprintf(stdout, "reopened:         records %d..%d all read back intact from %d segment files\n", l.FirstIndex(), l.LastIndex(), len(segs))
	if err := l.Close(); err != nil {
		return err
	}

	// A crash in the middle of the last append: its bytes reached the media
	// only in part. Flip a byte of the last record's payload on disk.
	if err := tearLastRecord(segs, payload(n)); err != nil {
		return err
	}
	l, err = wal.Open(*dir, opts)
	if err != nil {
		return err
	}
	defer l.Close()
	rep := l.Recovery()
	fmt.Fprintf(stdout, "torn last record: recovery dropped %d bytes (torn tail: %v); the log now ends at %d\n", rep.DroppedBytes, rep.TornTail, l.LastIndex())
	if l.LastIndex() != n-10 {
		return fmt.Errorf("%w: expected the torn batch (records %d..%d) to be dropped whole, log ends at %d", errProblem, n-9, n, l.LastIndex())
	}
	if err := verify(l, 1, n-10, payload); err != nil {
		return err
	}
	idx, err := l.Append([]byte("after recovery"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "after recovery:   the torn batch is gone whole, every earlier record is intact, and the next append got index %d\n", idx)
	if *keep {
		fmt.Fprintf(stdout, "kept:             %s\n", *dir)
	}
	return nil
}

func verify(l *wal.Log, from, to uint64, payload func(uint64) []byte) error {
	if l.FirstIndex() != from || l.LastIndex() != to {
		return fmt.Errorf("%w: log holds %d..%d, want %d..%d", errProblem, l.FirstIndex(), l.LastIndex(), from, to)
	}
	for i := from; i <= to; i++ {
		got, err := l.Read(i)
		if err != nil {
			return fmt.Errorf("%w: read %d: %v", errProblem, i, err)
		}
		if !bytes.Equal(got, payload(i)) {
			return fmt.Errorf("%w: record %d reads %q, want %q", errProblem, i, got, payload(i))
		}
	}
	return nil
}

// tearLastRecord finds the last record's payload in the newest segment file
// and changes one byte of it.
func tearLastRecord(segs []string, last []byte) error {
	if len(segs) == 0 {
		return fmt.Errorf("%w: no segment files", errProblem)
	}
	for i := len(segs) - 1; i >= 0; i-- {
		b, err := os.ReadFile(segs[i])
		if err != nil {
			return err
		}
		if at := bytes.LastIndex(b, last); at >= 0 {
			f, err := os.OpenFile(segs[i], os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{b[at] ^ 0xff}, int64(at)); err != nil {
				return err
			}
			return f.Sync()
		}
	}
	return fmt.Errorf("%w: last record not found on disk", errProblem)
}
