package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/pmwal/wal"
)

// oracle knows everything a workload appended and which calls were
// acknowledged before the crash, and checks a recovered log against it:
//
//	(a) every acknowledged record is present and byte-identical;
//	(b) the kept records are exactly FirstIndex..LastIndex, each readable;
//	(c) every kept record is byte-identical to what was appended at its index;
//	(d) a batch is wholly present or wholly absent.
type oracle struct {
	first uint64
	recs  map[uint64][]byte // index -> payload of every append attempted
	acked map[uint64]bool
	batch map[uint64][2]uint64 // index -> [first, last] of its batch
	// A truncation that had not returned when the crash came: the log may
	// be wholly before it or wholly after it.
	pendCut   *uint64 // TruncateBack(*pendCut)
	pendFront uint64  // TruncateFront(pendFront), 0 for none
}

func newOracle(first uint64) *oracle {
	return &oracle{first: first, recs: map[uint64][]byte{}, acked: map[uint64]bool{}, batch: map[uint64][2]uint64{}}
}

// appended records a call that wrote recs at first.. (a single record when
// len(recs)==1 and !isBatch); acked says it returned before the crash.
func (o *oracle) appended(first uint64, recs [][]byte, isBatch, acked bool) {
	last := first + uint64(len(recs)) - 1
	for i, r := range recs {
		idx := first + uint64(i)
		o.recs[idx] = r
		o.acked[idx] = acked
		if isBatch {
			o.batch[idx] = [2]uint64{first, last}
		}
	}
}

// truncatedBack records TruncateBack(c); acked says it returned before the
// crash.
func (o *oracle) truncatedBack(c uint64, acked bool) {
	if !acked {
		o.pendCut = &c
		return
	}
	for idx := range o.recs {
		if idx > c {
			delete(o.recs, idx)
			delete(o.acked, idx)
			delete(o.batch, idx)
		} else if b, ok := o.batch[idx]; ok && b[1] > c {
			o.batch[idx] = [2]uint64{b[0], c} // the cut batch keeps its first part, whole
		}
	}
}

// truncatedFront records TruncateFront(f); acked says it returned before
// the crash.
func (o *oracle) truncatedFront(f uint64, acked bool) {
	if !acked {
		o.pendFront = f
		return
	}
	if f <= o.first {
		return
	}
	o.first = f
	for idx := range o.recs {
		if idx < f {
			delete(o.recs, idx)
			delete(o.acked, idx)
			delete(o.batch, idx)
		} else if b, ok := o.batch[idx]; ok && b[0] < f {
			o.batch[idx] = [2]uint64{f, b[1]}
		}
	}
}

// inFlightTruncations counts checks made with a truncation in flight at
// the crash, so the sweep can show it exercised them.
var inFlightTruncations atomic.Int64

func (o *oracle) check(l *wal.Log) error {
	first, last := l.FirstIndex(), l.LastIndex()
	if o.pendCut != nil || o.pendFront != 0 {
		inFlightTruncations.Add(1)
	}
	if first != o.first && (o.pendFront == 0 || first != max(o.first, o.pendFront)) {
		return fmt.Errorf("FirstIndex %d, want %d (or %d if the truncation in flight happened)", first, o.first, o.pendFront)
	}
	cut := uint64(1<<64 - 1) // records above it may be gone with a truncation in flight
	if o.pendCut != nil && last <= *o.pendCut {
		cut = *o.pendCut
	}
	for idx, ok := range o.acked {
		if ok && idx >= first && idx <= cut && (idx < first || idx > last) {
			return fmt.Errorf("(a) acknowledged record %d lost: log holds %d..%d", idx, first, last)
		}
		if ok && idx < first && first == o.first {
			return fmt.Errorf("(a) acknowledged record %d lost: log holds %d..%d", idx, first, last)
		}
	}
	for idx := first; idx <= last; idx++ {
		got, err := l.Read(idx)
		if err != nil {
			return fmt.Errorf("(b) record %d in %d..%d unreadable: %v", idx, first, last, err)
		}
		want, ok := o.recs[idx]
		if !ok {
			return fmt.Errorf("(c) record %d (%d bytes) was never appended", idx, len(got))
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("(c) record %d differs from what was appended (%d bytes, want %d)", idx, len(got), len(want))
		}
		if b, ok := o.batch[idx]; ok && min(b[1], cut) > last {
			return fmt.Errorf("(d) batch %d..%d only partly kept: log holds %d..%d", b[0], b[1], first, last)
		}
	}
	return nil
}

// rebase makes the recovered log the new baseline: what it holds is
// durable now, and later appends continue after it.
func (o *oracle) rebase(l *wal.Log) {
	first, last := l.FirstIndex(), l.LastIndex()
	o.first, o.pendCut, o.pendFront = first, nil, 0
	for idx := range o.recs {
		if idx < first || idx > last {
			delete(o.recs, idx)
			delete(o.acked, idx)
			delete(o.batch, idx)
			continue
		}
		o.acked[idx] = true
		if b, ok := o.batch[idx]; ok { // truncations may have cut the batch
			o.batch[idx] = [2]uint64{max(b[0], first), min(b[1], last)}
		}
	}
}

// isCrashError reports errors a crash test may legitimately see from the
// log itself (none: a simulated crash never fails a call).
func isCrashError(err error) bool { return errors.Is(err, wal.ErrClosed) }
