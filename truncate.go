package wal

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"slices"
)

// TruncateFront drops every record before index, for example after a
// checkpoint or snapshot made them unnecessary. FirstIndex becomes index,
// even in the middle of a segment, and stays so after a reopen or a crash:
// the new first index is made durable (in META) before anything is
// deleted. Segment files whose records all lie before index are removed.
//
// When index is past LastIndex()+1 the log is emptied and numbering
// continues there: FirstIndex()==index, LastIndex()==index-1, and the next
// Append gets index (a Raft follower installing a snapshot). An index at or
// below FirstIndex changes nothing.
//
// Within the log, TruncateFront runs beside appends and reads: it writes
// META while they go on, holds them off only to take the emptied segments
// out of the log (no system call), and unmaps and removes those after.
// Past the end it waits for appends and reads in progress and holds off
// new ones while it runs.
func (l *Log) TruncateFront(index uint64) error {
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	l.closeMu.RLock()
	l.mu.Lock()
	l.catchUp()
	first, next, err := l.first, l.next, l.failed
	if l.closed {
		err = ErrClosed
	} else if l.opts.ReadOnly {
		err = ErrReadOnly
	}
	l.mu.Unlock()
	if err != nil || index <= first {
		l.closeMu.RUnlock()
		return err
	}
	if index > next {
		// Numbering moves: that needs the log to itself.
		l.closeMu.RUnlock()
		return l.truncateFrontPastEnd(index)
	}
	// next only grows while truncMu is held (TruncateBack takes it too),
	// so index stays within the log. The new first index is durable
	// before anything is dropped; Close waits for this write.
	err = l.writeMeta(meta{first: index})
	l.closeMu.RUnlock()
	if err != nil {
		l.mu.Lock()
		l.fail(err)
		err = l.failed
		l.mu.Unlock()
		return err
	}
	unlock, err := l.exclusive()
	if err != nil {
		return err // META is written: the next Open finishes the truncation
	}
	l.first = index
	var dropped []*segment
	var reusable []bool
	for len(l.segs) > 1 && l.segs[1].first <= index {
		s := l.segs[0]
		l.segs = l.segs[1:]
		dropped = append(dropped, s)
		// Out of l.segs, s can gain no new pin; one held now keeps it
		// from reuse.
		reusable = append(reusable, s.pins.Load() == 0 && int64(s.size()) == l.opts.SegmentSize)
	}
	unlock()
	for i, s := range dropped {
		s.close()
		if err := l.retire(s, reusable[i]); err != nil {
			return err // the log is consistent: the next Open finishes the job
		}
		// Oldest first, each removal durable before the next: a crash
		// must never bring an older file back beside a newer one gone.
		if err := l.media.SyncDir(l.dir); err != nil {
			return err
		}
	}
	return nil
}

// truncateFrontPastEnd empties the log and makes numbering continue at
// index, holding the log to itself.
func (l *Log) truncateFrontPastEnd(index uint64) error {
	unlock, err := l.exclusive()
	if err != nil {
		return err
	}
	defer unlock()
	if index <= l.first {
		return nil
	}
	if err := l.writeMeta(meta{first: index}); err != nil {
		l.fail(err)
		return l.failed
	}
	if index > l.next {
		// META says so already: the old records are gone from here on,
		// even if removing their files fails.
		l.first = index
		if err := l.resetAt(index); err != nil {
			l.fail(err)
			return l.failed
		}
		l.startPrepare()
		return nil
	}
	l.first = index
	for len(l.segs) > 1 && l.segs[1].first <= index {
		s := l.segs[0]
		l.segs = l.segs[1:]
		if err := l.dropSegment(s, ""); err != nil {
			return err // the log is consistent: recovery finishes the job
		}
	}
	return nil
}

// TruncateBack drops every record after index (Raft's conflict
// resolution); the next Append gets index+1. It is crash-safe: after a
// crash at any moment the log holds either every record it held before, or
// exactly the records up to index, and the dropped records never come back,
// also after more appends and another crash. index may be FirstIndex()-1,
// which empties the log; an index at or past LastIndex changes nothing; an
// index below FirstIndex()-1 gives ErrNotFound.
//
// TruncateBack waits for appends and reads in progress and holds off new
// ones while it runs.
func (l *Log) TruncateBack(index uint64) error {
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	unlock, err := l.exclusive()
	if err != nil {
		return err
	}
	defer unlock()
	if index >= l.durable {
		return nil
	}
	if index < l.first-1 {
		return fmt.Errorf("%w: truncate back to %d, below the first index %d", ErrNotFound, index, l.first)
	}
	// The intent is durable first: recovery redoes the cut from it, so a
	// crash leaves the log wholly before or wholly after.
	if err := l.writeMeta(meta{first: l.first, cut: index, cutting: true}); err != nil {
		l.fail(err)
		return l.failed
	}
	if err := l.redoCut(index); err != nil {
		l.fail(err)
		return l.failed
	}
	l.startPrepare()
	return nil
}

// exclusive takes the mapping lock exclusively (no Read or Tail in
// progress) and l.mu, and waits for the appends in flight (quiesce), for a
// truncation; it fails on a closed or failed log.
func (l *Log) exclusive() (unlock func(), err error) {
	l.closeMu.Lock()
	l.mu.Lock()
	l.quiesce()
	unlock = func() {
		l.unquiesce()
		l.mu.Unlock()
		l.closeMu.Unlock()
	}
	switch {
	case l.closed:
		err = ErrClosed
	case l.opts.ReadOnly:
		err = ErrReadOnly
	default:
		err = l.failed
	}
	if err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// redoCut removes every record after index, given that META already says
// so (TruncateBack, or recovery finishing one): later segment files are
// removed newest first, the rest of the segment holding index is zeroed and
// made durable, and META's intent is cleared. It works on l.segs whether
// they were scanned or not (l.mu held or the log not yet shared).
func (l *Log) redoCut(index uint64) error {
	l.takePrepared()
	k := 0
	for k+1 < len(l.segs) && l.segs[k+1].first <= index+1 {
		k++
	}
	later := l.closeAfter(k)
	if l.recovering {
		l.droppedFiles(later, "completed a back truncation")
	}
	// The records after index leave the log's view now, whatever fails
	// below: META already says they are gone.
	l.markCut(index)
	if l.next > index+1 {
		l.next, l.written, l.durable = index+1, index, index
	}
	if err := l.removeSeqs(later); err != nil {
		return err
	}
	s := l.segs[k]
	// A repair may have removed the segments that held the cut point:
	// the cut then lands on the last record left before the damage.
	commit, err := cutBatch(s, index, l.recovering && l.opts.RepairCorruption)
	if err != nil {
		return err
	}
	end := lastNonZero(s.mem, commit, s.size())
	if l.recovering && end > commit {
		l.report.DroppedBytes += int64(end - commit)
		l.dropped(s.path, int64(commit), int64(end-commit), "completed a back truncation")
	}
	if err := s.zero(commit, end); err != nil {
		return err
	}
	if err := l.writeMeta(meta{first: l.first}); err != nil {
		return err
	}
	l.nextSeq = s.seq + 1
	l.next = s.first + uint64(s.offs.Len())
	if l.next-1 < index { // a repair cut short of index
		l.markCut(l.next - 1)
	}
	l.written = l.next - 1
	l.setDurable(l.next-1, commit)
	l.tail, l.wOff = commit, commit
	return nil
}

// cutMark is one back truncation: the cut count after it, and the last
// index it kept.
type cutMark struct{ seq, index uint64 }

// maxCutMarks bounds the cut history tailers consult.
const maxCutMarks = 256

// markCut records a back truncation to index and wakes waiting tailers,
// which may have returned records it removed (l.mu and l.closeMu held).
//
// A tailer needs the lowest index kept by any cut since it last looked.
// l.cutMarks keeps, oldest first, only the cuts not undercut by a later
// one, so both their counts and their indexes increase: the answer is the
// index of the first mark newer than the tailer's count.
func (l *Log) markCut(index uint64) {
	l.cuts++
	k := len(l.cutMarks)
	for k > 0 && l.cutMarks[k-1].index >= index {
		k--
	}
	l.cutMarks = append(l.cutMarks[:k], cutMark{l.cuts, index})
	if len(l.cutMarks) > maxCutMarks {
		l.cutsLost = l.cutMarks[0].seq
		l.cutMarks = append(l.cutMarks[:0], l.cutMarks[1:]...)
	}
	l.wakeTailers()
}

// cutBelow reports whether a back truncation after cut count since kept
// only indexes below index (l.mu held). A count older than the history
// kept says yes: a tailer that has slept through hundreds of truncations
// must start again.
func (l *Log) cutBelow(since, index uint64) bool {
	if since == l.cuts {
		return false
	}
	if since < l.cutsLost {
		return true
	}
	i, _ := slices.BinarySearchFunc(l.cutMarks, since+1, func(m cutMark, seq uint64) int { return cmp.Compare(m.seq, seq) })
	return i < len(l.cutMarks) && l.cutMarks[i].index < index
}

// resetAt empties the log so that numbering continues at first, given that
// META already says so: a fresh segment is activated at first and every
// older segment file removed (l.mu held or the log not yet shared).
func (l *Log) resetAt(first uint64) error {
	l.takePrepared()
	sp := l.spare
	l.spare = nil
	if sp == nil || sp.seq != l.nextSeq {
		if sp != nil {
			sp.close()
			if err := l.media.Remove(sp.path); err != nil {
				return err
			}
		}
		var err error
		if sp, err = l.prepareSegment(l.nextSeq); err != nil {
			return err
		}
	}
	if err := sp.activate(first); err != nil {
		sp.close()
		return err
	}
	old := l.segs
	l.segs = []*segment{sp}
	l.nextSeq = sp.seq + 1
	l.next = first
	l.written = first - 1
	l.setDurable(first-1, segHeaderSize)
	l.tail, l.wOff = segHeaderSize, segHeaderSize
	var err error
	for _, s := range old {
		if e := l.dropSegment(s, ""); err == nil {
			err = e
		}
	}
	return err
}

// takePrepared collects a segment preparation in progress, so that nothing
// creates a file behind a truncation's back (l.mu held).
func (l *Log) takePrepared() {
	if l.prepCh == nil {
		return
	}
	res := <-l.prepCh
	l.prepCh = nil
	if res.err != nil {
		return
	}
	if l.spare == nil {
		l.spare = res.seg
		return
	}
	res.seg.close()
	l.media.Remove(res.seg.path)
}

// dropSegment closes and removes (or keeps for reuse) a segment file whose
// records are all truncated away, and syncs the directory. A segment an
// iterator still reads is removed, never reused: its mapping stays valid
// until the iterator lets go, and nothing new is written into it.
func (l *Log) dropSegment(s *segment, why string) error {
	if l.recovering {
		l.report.DroppedBytes += int64(s.size())
		l.report.DroppedFiles = append(l.report.DroppedFiles, s.path)
		l.dropped(s.path, 0, int64(s.size()), "completed a front truncation")
	}
	// No new pin can come while the caller holds closeMu exclusively.
	reusable := s.pins.Load() == 0 && int64(s.size()) == l.opts.SegmentSize
	s.close()
	if err := l.retire(s, reusable); err != nil {
		return err
	}
	if why != "" {
		l.note(why, "file", s.path)
	}
	return l.media.SyncDir(l.dir)
}

// cutBatch walks the records of s up to index, verifying each, and makes
// index the last record of its batch: a batch that TruncateBack cuts in
// two keeps its first part whole. Each record of that part gets batchLeft
// rewritten, checksum word first and fenced, then the word holding
// batchLeft, so that a crash leaves every header either as it was, or
// rewritten, or with only the new checksum; the walk accepts all three,
// and recovery redoes the rewrite. It sets s.offs and returns the offset
// just past index. A record missing or damaged before index is corruption,
// unless stopShort: then the cut moves to the record before it.
func cutBatch(s *segment, index uint64, stopShort bool) (int, error) {
	s.offs.Truncate(0)
	off, batchStart := segHeaderSize, 0
	for idx := s.first; idx <= index; idx++ {
		var bad error
		h := recHeader{}
		if off+recHeaderSize > s.size() {
			bad = fmt.Errorf("%w: %s: record %d before the truncation point %d runs past the segment", ErrCorrupt, s.path, idx, index)
		} else if h = readRecHeader(s.mem[off:]); h.index != idx || h.flags != 0 || off+recHeaderSize+int(h.length) > s.size() {
			bad = fmt.Errorf("%w: %s offset %d: record %d before the truncation point %d is damaged", ErrCorrupt, s.path, off, idx, index)
		} else if !recordSumOK(s, off, h) && cutSum(s, off, h, uint32(index-idx)) != h.sum {
			bad = fmt.Errorf("%w: %s offset %d: record %d before the truncation point %d: checksum mismatch", ErrCorrupt, s.path, off, idx, index)
		}
		if bad != nil {
			if !stopShort {
				return 0, bad
			}
			index = idx - 1
			break
		}
		if h.batchPos == 0 {
			batchStart = s.offs.Len()
		}
		s.offs.Append(uint32(off))
		off += recSize(int(h.length))
	}
	for i := batchStart; i < s.offs.Len(); i++ {
		o := int(s.offs.At(i))
		h := readRecHeader(s.mem[o:])
		want := uint32(index - (s.first + uint64(i)))
		if h.batchLeft == want {
			continue
		}
		le.PutUint64(s.mem[o:], cutSum(s, o, h, want))
		if err := s.persist(o, 8); err != nil {
			return 0, err
		}
		le.PutUint32(s.mem[o+20:], want)
		if err := s.persist(o+16, 8); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// cutSum is the checksum of the record at off with batchLeft replaced.
func cutSum(s *segment, off int, h recHeader, batchLeft uint32) uint64 {
	var hdr [recHeaderSize]byte
	copy(hdr[:], s.mem[off:off+recHeaderSize])
	le.PutUint32(hdr[20:], batchLeft)
	return recordSum(hdr[:], s.mem[off+recHeaderSize:off+recHeaderSize+int(h.length)], s.hdr.salt)
}

// closeAfter closes the segments after l.segs[k] and, when there are any,
// the spare (whose sequence number no longer follows), drops them from the
// log, and returns their sequence numbers, oldest first.
func (l *Log) closeAfter(k int) []uint64 {
	var seqs []uint64
	for _, t := range l.segs[k+1:] {
		seqs = append(seqs, t.seq)
		t.close()
	}
	if l.spare != nil && len(seqs) > 0 {
		seqs = append(seqs, l.spare.seq)
		l.spare.close()
		l.spare = nil
	}
	l.segs = l.segs[:k+1]
	return seqs
}

// removeSeqs removes segment files newest first, each removal made durable
// (the directory synced) before the next, so that a crash part way leaves
// no gap: a removal not yet synced may be undone by a crash independently
// of the others.
func (l *Log) removeSeqs(seqs []uint64) error {
	for j := len(seqs) - 1; j >= 0; j-- {
		path := l.segPath(seqs[j])
		if err := l.media.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("wal: remove %s: %w", path, err)
		}
		if err := l.media.SyncDir(l.dir); err != nil {
			return err
		}
	}
	return nil
}
