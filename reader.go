package wal

import (
	"context"
	"fmt"
	"iter"
	"time"
)

// Records iterates over the records from index from to LastIndex() as it
// was when each step began (none, and no error, when from is beyond it), in
// order, without copying: the slice yielded
// for a record is the record in the log's mapping, verified against its
// checksum, and valid only until the loop body returns (copy it to keep
// it). Other goroutines may append, read, tail, truncate and close during
// the loop, and so may the loop body itself: a segment is kept mapped while
// a loop body holds a slice of it, even if a truncation removes its file,
// and is then never reused for new records. The one exception: a
// TruncateBack that drops the very record a loop body holds clears it (the
// record is gone from the log, and later appends take its place); a body
// that may race with such a TruncateBack must copy the record first.
// A TruncateBack that removes the record yielded last ends the loop with
// ErrNotFound at the next step, as it does a Tailer: the records after it
// would not follow the ones yielded. An Iterator, like a Tailer, is for
// one goroutine at a time.
// The loop ends early at the first error, which Err then returns:
//
//	it := l.Records(l.FirstIndex())
//	for idx, rec := range it.All() {
//		...
//	}
//	if err := it.Err(); err != nil { ... }
func (l *Log) Records(from uint64) *Iterator {
	return &Iterator{l: l, next: from}
}

// Iterator is a pass over the log's records; see Log.Records.
type Iterator struct {
	l       *Log
	next    uint64
	err     error
	yielded bool   // record next-1 was yielded
	cuts    uint64 // l.cuts at the last step
}

// All yields index and payload of each record from the iterator's position
// to the end of the log.
func (it *Iterator) All() iter.Seq2[uint64, []byte] {
	return func(yield func(uint64, []byte) bool) {
		l := it.l
		for it.err == nil {
			l.closeMu.RLock() // no TruncateBack while it is held
			if end, err := it.check(); end || err != nil {
				l.closeMu.RUnlock()
				it.err = err
				return
			}
			var rec []byte
			var seg *segment
			err := guardFault("iterate", func() (err error) {
				rec, seg, err = l.borrow(it.next)
				return err
			})
			if err != nil {
				l.closeMu.RUnlock()
				it.err = err
				return
			}
			// Pinned, the segment stays mapped through the loop body even if
			// a truncation or Close removes it meanwhile.
			seg.pin()
			l.closeMu.RUnlock()
			idx := it.next
			it.next++
			it.yielded = true
			more := yield(idx, rec)
			seg.unpin()
			if !more {
				return
			}
		}
	}
}

// check reports whether the iterator is past LastIndex, or why it must
// stop (l.closeMu held shared): the log is closed (at the end as anywhere
// else, a step on a closed log says so), or a TruncateBack since the last
// step removed the record it yielded last, so that the next index would
// join records that were never in the log together.
func (it *Iterator) check() (bool, error) {
	l := it.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, ErrClosed
	}
	if it.yielded && l.cutBelow(it.cuts, it.next-1) {
		return false, fmt.Errorf("%w: record %d, which this iterator yielded, was removed by TruncateBack", ErrNotFound, it.next-1)
	}
	it.cuts = l.cuts
	if it.next > l.durable {
		l.catchUp()
	}
	return it.next > l.durable, nil
}

// Err reports the error that ended the iteration, if any.
func (it *Iterator) Err() error { return it.err }

// Tail returns a reader that starts at index from and follows the log as
// it grows, for consumers such as a broker's subscribers. Many tailing
// readers may run at once; none polls. A from beyond LastIndex()+1 waits
// until the log reaches it. A Tailer is for one goroutine at a time.
func (l *Log) Tail(from uint64) *Tailer {
	return &Tailer{l: l, next: from}
}

// Tailer follows the log; see Log.Tail.
type Tailer struct {
	l        *Log
	next     uint64
	returned bool   // Next has returned record next-1
	cuts     uint64 // l.cuts when it was returned or last checked
	poll     bool   // membarrier failed in the last wait: look again after tailerPoll
}

// tailerPoll is how long a Tailer waits before it looks again when
// membarrier failed, so that a publication it may have missed cannot keep
// it waiting (fastFinish). The kernel refuses membarrier only when it runs
// out of memory.
const tailerPoll = 100 * time.Microsecond

// Next returns the next record, waiting until it is durable or ctx is
// done. The payload is appended to buf[:0] (so a reused buffer costs no
// allocation) and belongs to the caller. A reader whose position has been
// truncated away gets ErrNotFound, as does one whose last returned record
// a TruncateBack has since removed or replaced: the records it returned
// are no longer the log's, so it must start again from an index it trusts
// (a waiting Next returns then too). So may, to be safe, a tailer that has
// not called Next while more than 256 back truncations ran. (A tailer
// that has returned nothing yet has nothing to disown: it reads whatever
// the log holds at its position.) A record already durable is returned
// even if ctx is done; ctx.Err() comes only instead of waiting. A nil ctx
// waits without a deadline.
func (t *Tailer) Next(ctx context.Context, buf []byte) (uint64, []byte, error) {
	l := t.l
	if ctx == nil {
		ctx = context.Background()
	}
	for {
		l.closeMu.RLock() // no TruncateBack while it is held
		index, out, grew, err := t.step(buf)
		l.closeMu.RUnlock()
		if err != nil || grew == nil {
			return index, out, err
		}
		var poll <-chan time.Time
		if t.poll {
			poll = time.After(tailerPoll)
		}
		select {
		case <-grew: // LastIndex advanced, or the log failed or was closed
		case <-poll:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
}

// step returns the next record, or the channel to wait on until there may
// be one (l.closeMu held shared).
func (t *Tailer) step(buf []byte) (uint64, []byte, chan struct{}, error) {
	l := t.l
	l.mu.Lock()
	l.catchUp()
	for t.next > l.durable && !l.closed && l.failed == nil {
		// Announce the wait before the last look at the durable point, so
		// that an append publishing after that look sees it and wakes
		// this tailer (fastpath.go). A look that finds more closes grew:
		// make another and look again.
		if l.grew == nil {
			l.grew = make(chan struct{})
		}
		l.fast.watch.Store(1)
		t.poll = false
		if l.hw.plainPublish && l.fast.on && !l.fast.fenced {
			// An append publishes with a plain store, and its load of
			// watch may pass it: make every running appender's store
			// visible, and its next load see watch (fastFinish). No
			// epoch can open while l.mu is held, and an append of a
			// later one loads watch after its opening. Once that is
			// done, until watch is cleared, the next Tailer to wait
			// need not do it again: every publication since is either
			// seen by it or sees watch.
			t.poll = !membarrier()
			l.fast.fenced = !t.poll
		}
		before := l.durable
		l.catchUp()
		if l.durable == before {
			break
		}
	}
	closed, failed, cuts, durable := l.closed, l.failed, l.cuts, l.durable
	// A TruncateBack since the last record returned: it must have kept
	// that record, else what this tailer returned is no longer the log's.
	gone := t.returned && l.cutBelow(t.cuts, t.next-1)
	var grew chan struct{}
	if !closed && failed == nil && t.next > durable {
		if l.grew == nil {
			l.grew = make(chan struct{})
		}
		grew = l.grew
	}
	l.mu.Unlock()
	if closed {
		return 0, nil, nil, ErrClosed
	}
	if gone {
		return 0, nil, nil, fmt.Errorf("%w: record %d, which this tailer returned, was removed by TruncateBack", ErrNotFound, t.next-1)
	}
	t.cuts = cuts
	if t.next <= durable {
		err := guardFault("tail", func() error {
			rec, _, err := l.borrow(t.next)
			if err == nil {
				buf = append(buf[:0], rec...)
			}
			return err
		})
		if err != nil {
			return 0, nil, nil, err
		}
		t.next++
		t.returned = true
		return t.next - 1, buf, nil, nil
	}
	if failed != nil {
		return 0, nil, nil, failed
	}
	return 0, nil, grew, nil
}

// Stats are a Log's counters and state; see Log.Stats. The counters start
// at zero at every Open.
type Stats struct {
	Segments     int     // segment files in use
	FirstIndex   uint64  // as FirstIndex()
	LastIndex    uint64  // as LastIndex()
	BytesUsed    int64   // bytes of records (with their headers, not the segments') in the segments in use, including records below FirstIndex that share a segment with kept ones
	BytesFree    int64   // room left in the active segment
	Appends      uint64  // Append and AppendBatch calls that completed, durable or failed
	Records      uint64  // records given an index (counted when space is reserved, before they are durable)
	Bytes        uint64  // payload bytes of those records
	FlushedLines uint64  // cache lines written back by appends (not those written with non-temporal stores, which need none)
	Fences       uint64  // fences issued by appends
	Syncs        uint64  // msyncs issued by appends (group commits)
	Recycled     uint64  // segments made from recycled files (Options.RecycleSegments)
	FreeSegments int     // emptied segment files kept for reuse
	Persist      Persist // the persistence path in effect
	Hardware     Hardware
	Recovery     RecoveryReport // what Open found, how long it took, what it dropped
}

// Stats returns the log's counters and state.
func (l *Log) Stats() Stats {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fastOff() // the counters of fast appends, exact; the next append turns it on again
	s := l.stats
	if l.closed {
		s.FirstIndex, s.LastIndex, s.Persist = l.first, l.durable, l.persist
		return s
	}
	s.Segments = len(l.segs)
	s.FirstIndex, s.LastIndex = l.first, l.durable
	for i, seg := range l.segs {
		if i == len(l.segs)-1 {
			s.BytesUsed += int64(l.tail - segHeaderSize)
			s.BytesFree = int64(seg.size() - l.tail)
		} else if n := seg.offs.Len(); n > 0 {
			last := int(seg.offs.At(n - 1))
			s.BytesUsed += int64(last + recSize(int(readRecHeader(seg.mem[last:]).length)) - segHeaderSize)
		}
	}
	s.Persist = l.persist
	s.Hardware = l.hw.describe()
	s.Recovery = l.Recovery()
	l.poolMu.Lock()
	s.Recycled, s.FreeSegments = l.recycled, len(l.pool)
	l.poolMu.Unlock()
	return s
}
