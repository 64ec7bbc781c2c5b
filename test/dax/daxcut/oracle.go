package daxcut

import (
	"fmt"
	"sort"
)

// Oracle is the host's side of the power-cut test. It is told what each
// boot's appender acknowledged (as far as the console showed it before the
// cut) and checks every Summary a later boot's recovery reports:
//
//   - the guest verified every record: each is the payload the appender
//     wrote at its index, byte for byte; calls are whole (a batch is
//     entirely present or entirely absent); incarnations never go back;
//   - the log is mapped with MAP_SYNC (Persist() = dax) and is exactly
//     1..LastIndex;
//   - every acknowledged record is present, written by the boot that
//     acknowledged it;
//   - every record an earlier complete check saw is still there, from the
//     same boot (nothing recovered once is lost or replaced later);
//   - every record past what the last complete check saw was written by the
//     boot of that check or a later one: a record recovery dropped never
//     comes back.
//
// Records whose append had not returned may be kept or dropped; they are
// counted, not judged, beyond the checks above.
type Oracle struct {
	verified   []Run  // the runs of the last complete check
	checkedInc uint32 // the boot of that check; 0 if none yet
	acks       map[uint32]*Ack

	Checks      int    // complete checks
	AckedChecks uint64 // acknowledged records checked, summed over checks
	KeptUnacked uint64 // records kept past what the host saw acknowledged
	Torn        int    // recoveries that dropped a torn tail
	Dropped     int    // complete-looking records recovery dropped
}

// Ack is what the host saw of one boot's appender.
type Ack struct {
	Start uint64 // index of its first append
	Max   uint64 // highest index acknowledged; Start-1 if none
}

// Started records that boot inc's appender began appending at first.
func (o *Oracle) Started(inc uint32, first uint64) {
	if o.acks == nil {
		o.acks = make(map[uint32]*Ack)
	}
	o.acks[inc] = &Ack{Start: first, Max: first - 1}
}

// Acked records that boot inc's appender acknowledged every index up to idx.
func (o *Oracle) Acked(inc uint32, idx uint64) error {
	a := o.acks[inc]
	if a == nil {
		return fmt.Errorf("boot %d acknowledged %d before it said where it started", inc, idx)
	}
	if idx < a.Max {
		return fmt.Errorf("boot %d acknowledged %d after %d", inc, idx, a.Max)
	}
	a.Max = idx
	return nil
}

// AckedTotal is the number of records the host saw acknowledged.
func (o *Oracle) AckedTotal() uint64 {
	var n uint64
	for _, a := range o.acks {
		n += a.Max + 1 - a.Start
	}
	return n
}

// incAt is the incarnation that wrote index i according to runs (sorted,
// contiguous), or 0 if i is outside them.
func incAt(runs []Run, i uint64) uint32 {
	k := sort.Search(len(runs), func(k int) bool { return runs[k].To >= i })
	if k < len(runs) && runs[k].From <= i {
		return runs[k].Inc
	}
	return 0
}

// Check judges what boot s.Inc found after the cut and, if it passes,
// makes it the new reference. It returns the violations.
func (o *Oracle) Check(s Summary) []string {
	var v []string
	bad := func(format string, args ...any) { v = append(v, fmt.Sprintf(format, args...)) }
	for _, b := range s.Bad {
		bad("the guest's verification failed: %s", b)
	}
	vLast := uint64(0)
	if n := len(o.verified); n > 0 {
		vLast = o.verified[n-1].To
	}
	var acked uint64
	for _, a := range o.acks {
		acked = max(acked, a.Max)
	}
	if s.Persist == "none" {
		if vLast > 0 || acked > 0 {
			bad("the log directory is gone, yet records up to %d were verified and up to %d acknowledged", vLast, acked)
		}
		return v
	}
	if s.Persist != "dax" {
		bad("the log was opened with PersistDAX but reports Persist() = %s", s.Persist)
	}
	if s.First != 1 {
		bad("FirstIndex is %d, want 1 (nothing was truncated)", s.First)
	}
	next := s.First
	for _, r := range s.Runs {
		if r.From != next || r.To < r.From {
			bad("the reported runs do not tile %d..%d: %+v", s.First, s.Last, s.Runs)
			break
		}
		next = r.To + 1
	}
	if next != s.Last+1 {
		bad("the reported runs end at %d, LastIndex is %d", next-1, s.Last)
	}
	if s.Last < vLast {
		bad("LastIndex is %d, but an earlier recovery kept records up to %d", s.Last, vLast)
	}
	for _, r := range o.verified {
		for i := r.From; i <= min(r.To, s.Last); i++ {
			if got := incAt(s.Runs, i); got != r.Inc {
				bad("record %d was written by boot %d when an earlier recovery verified it; now it is from boot %d", i, r.Inc, got)
				break
			}
		}
	}
	incs := make([]uint32, 0, len(o.acks))
	for inc := range o.acks {
		incs = append(incs, inc)
	}
	sort.Slice(incs, func(a, b int) bool { return incs[a] < incs[b] })
	for _, inc := range incs {
		a := o.acks[inc]
		if a.Max < a.Start {
			continue
		}
		if s.Last < a.Max {
			bad("boot %d acknowledged records %d..%d, but the log ends at %d: acknowledged records were lost", inc, a.Start, a.Max, s.Last)
		}
		for i := a.Start; i <= min(a.Max, s.Last); i++ {
			if got := incAt(s.Runs, i); got != inc {
				bad("record %d, acknowledged by boot %d, is from boot %d", i, inc, got)
				break
			}
		}
		o.AckedChecks += a.Max + 1 - a.Start
	}
	for i := vLast + 1; i <= s.Last; i++ {
		got := incAt(s.Runs, i)
		if got < o.checkedInc || got >= s.Inc {
			bad("record %d is from boot %d, but the recovery of boot %d ended the log at %d and this is boot %d: a dropped record came back, or a record from the future", i, got, o.checkedInc, vLast, s.Inc)
			break
		}
		if a := o.acks[got]; a == nil || i > a.Max {
			o.KeptUnacked++
		}
	}
	if len(v) > 0 {
		return v
	}
	o.verified = append(o.verified[:0], s.Runs...)
	o.checkedInc = s.Inc
	o.Checks++
	if s.Torn {
		o.Torn++
	}
	o.Dropped += s.Dropped
	return nil
}
