package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/pmwal/wal"
)

func runVerify(e env) error {
	fs := newFlags("verify", "DIR",
		"Checks every record's checksum, index and batch framing in every segment, as recovery does,\n"+
			"and reads every record back. Reports a torn tail (what a crash left of an unacknowledged\n"+
			"append; the next writer's Open drops it) or corruption, with file and offset.\n"+
			"Read-only: never modifies the log, and refuses (exit 2) while a writer has it open.\n"+
			"Exit 1 on corruption.", e.stderr)
	pos, err := parse(fs, e.args, 1)
	if err != nil {
		return err
	}
	dir := pos[0]
	start := time.Now()
	l, err := openReadOnly(dir, false)
	if errors.Is(err, wal.ErrCorrupt) {
		fmt.Fprintf(e.stdout, "CORRUPT: %v\n", err)
		fmt.Fprintf(e.stdout, "(pmwal repair %s cuts the log at the last good record, saving what it cuts)\n", dir)
		return fmt.Errorf("%w: %s is corrupt", errProblem, dir)
	}
	if err != nil {
		return err
	}
	defer l.Close()
	rep := l.Recovery()
	var n, bytes uint64
	it := l.Records(l.FirstIndex())
	for _, rec := range it.All() {
		n++
		bytes += uint64(len(rec))
	}
	if err := it.Err(); err != nil {
		fmt.Fprintf(e.stdout, "CORRUPT: %v\n", err)
		return fmt.Errorf("%w: %s: %v", errProblem, dir, err)
	}
	first, last := l.FirstIndex(), l.LastIndex()
	if want := last + 1 - first; n != want {
		return fmt.Errorf("%w: %s: read %d records, the log holds %d..%d", errProblem, dir, n, first, last)
	}
	for _, d := range rep.Dropped {
		if d.Why == "torn tail" {
			fmt.Fprintf(e.stdout, "torn tail: %s offset %d, %d bytes (%d complete-looking records of an unacknowledged write); the next writer's Open drops it\n",
				filepath.Base(d.File), d.Offset, d.Length, rep.DroppedRecords)
		} else {
			fmt.Fprintf(e.stdout, "pending: %s offset %d, %d bytes: the next writer's Open drops them (%s)\n",
				filepath.Base(d.File), d.Offset, d.Length, d.Why)
		}
	}
	rng := "no records"
	if n > 0 {
		rng = fmt.Sprintf("records %d..%d", first, last)
	}
	fmt.Fprintf(e.stdout, "ok: %s (%d records, %d payload bytes) in %d segments verified in %v\n",
		rng, n, bytes, rep.Segments, time.Since(start).Round(time.Millisecond))
	return nil
}
