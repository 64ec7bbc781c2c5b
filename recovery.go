package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// recover rebuilds the log's state from the directory (Open, before the Log
// is shared). The repair paths are kept here, out of the read and append
// paths.
func (l *Log) recover() error {
	l.recovering = true
	defer func() { l.recovering = false }()
	seqs, err := l.listSegments()
	if err != nil {
		return err
	}
	want := l.opts.Persist
	type slot struct {
		s      *segment // nil when the header does not describe the file
		bad    error    // why the header is bad
		unused bool     // certainly never held a record
	}
	slots := make([]slot, len(seqs))
	closeSlots := func(from int) {
		for i := from; i < len(slots); i++ {
			if slots[i].s != nil {
				slots[i].s.close()
				slots[i].s = nil
			}
		}
	}
	lastAct := -1 // the last activated segment
	for i, seq := range seqs {
		s, err := openSegment(l.media, l.segPath(seq), seq, want)
		if err != nil && !errors.Is(err, errBadHeader) {
			closeSlots(0)
			return err
		}
		if err == nil && (want == PersistAuto || l.opts.ReadOnly) {
			// A read-only log maps privately, whatever was asked: it
			// reports that (PersistMsync), not the mode asked for.
			want = s.mode
		}
		slots[i] = slot{s: s, bad: err}
		if err != nil {
			slots[i].unused = holdsNothing(l.media, l.segPath(seq), seq)
		} else if s.first == 0 {
			// Not activated. Records start at segHeaderSize, and nothing is
			// written further than the in-flight bound past them, so a
			// segment that ever held a record is not zero there: its
			// activation block was damaged, and it is corrupt.
			if end := min(s.size(), segHeaderSize+s.bound()); lastNonZero(s.mem, segHeaderSize, end) == segHeaderSize {
				slots[i].unused = true
			} else {
				slots[i].bad = fmt.Errorf("%s: activation block does not verify, yet the segment holds data", s.path)
			}
		} else {
			lastAct = i
		}
	}
	var firstSeg *segment
	hasData := lastAct >= 0
	if hasData {
		firstSeg = slots[0].s
	}
	for _, sl := range slots {
		hasData = hasData || (sl.bad != nil && !sl.unused)
	}
	m, writeMeta, metaErr, err := l.recoverMeta(firstSeg, hasData)
	if err != nil {
		closeSlots(0)
		return err
	}
	first := m.first
	// The files must be: activated segments with consecutive sequence
	// numbers and rising first indexes, the first holding the log's first
	// index, then at most never-used ones.
	cutAt := -1
	var cutErr error
	for i, seq := range seqs {
		path, sl := l.segPath(seq), slots[i]
		switch {
		case i == 0 && lastAct >= 0 && sl.s != nil && sl.s.first > first:
			cutErr = fmt.Errorf("%w: %s starts at record %d but %s says the log starts at %d: records %d..%d are missing",
				ErrCorrupt, path, sl.s.first, metaName, first, first, sl.s.first-1)
		case i > 0 && seq != seqs[i-1]+1:
			cutErr = fmt.Errorf("%w: segment %d missing before %s", ErrCorrupt, seqs[i-1]+1, path)
		case sl.bad != nil && !sl.unused:
			cutErr = fmt.Errorf("%w: %w", ErrCorrupt, sl.bad)
		case i < lastAct && sl.unused:
			cutErr = fmt.Errorf("%w: %s: not activated, yet a later segment is: its activation block is damaged", ErrCorrupt, path)
		case i > 0 && i <= lastAct && sl.s.first < slots[i-1].s.first:
			cutErr = fmt.Errorf("%w: %s: first index %d below the previous segment's %d", ErrCorrupt, path, sl.s.first, slots[i-1].s.first)
		}
		if cutErr != nil {
			cutAt = i
			break
		}
	}
	if cutErr == nil {
		cutErr = metaErr
	}
	if cutErr != nil {
		if !l.opts.RepairCorruption {
			closeSlots(0)
			return cutErr
		}
		closeSlots(cutAt)
		if err := l.removeFiles(seqs[cutAt:], cutErr); err != nil {
			closeSlots(0)
			return err
		}
		seqs, slots = seqs[:cutAt], slots[:cutAt]
		lastAct = min(lastAct, cutAt-1)
	}
	if writeMeta {
		if !hasData {
			// A new log: its directory's own entry must be durable before
			// the first record can be, whoever created the directory (a
			// caller's os.MkdirAll is not synced). Done before META exists,
			// so that an Open that fails here is redone by the next one.
			// (Join, not Dir: the parent of "." is "..".)
			if err := l.media.SyncDir(filepath.Join(l.dir, "..")); err != nil {
				closeSlots(0)
				return err
			}
		}
		if err := l.writeMeta(m); err != nil {
			closeSlots(0)
			return err
		}
	}
	var segs []*segment // activated, in order
	var spare *segment
	removed := false
	for i, sl := range slots {
		if i <= lastAct {
			segs = append(segs, sl.s)
			continue
		}
		if sl.s != nil && spare == nil && int64(sl.s.size()) == l.opts.SegmentSize && (lastAct < 0 || i == lastAct+1) {
			spare = sl.s
			continue
		}
		if sl.s != nil {
			sl.s.close()
		}
		path := l.segPath(seqs[i])
		if err := l.media.Remove(path); err != nil {
			closeAll(segs, spare)
			return fmt.Errorf("wal: remove %s: %w", path, err)
		}
		l.note("removed a segment file that never held records", "file", path)
		removed = true
	}
	if removed {
		// Durable before any segment is activated: numbering continues
		// after the removed files, and a crash that brought one back
		// would put a never-activated segment before an activated one.
		if err := l.media.SyncDir(l.dir); err != nil {
			closeAll(segs, spare)
			return err
		}
	}
	if want == PersistAuto { // no segment could be opened: decide with the first new one
		want = l.opts.Persist
	}
	l.persist = want
	if len(seqs) > 0 {
		l.nextSeq = seqs[len(seqs)-1] + 1
	}
	// Finish an interrupted TruncateFront: segments wholly below the first
	// index go, oldest first.
	for len(segs) > 1 && segs[1].first <= first {
		if err := l.dropSegment(segs[0], "completed a front truncation"); err != nil {
			closeAll(segs, spare)
			return err
		}
		segs = segs[1:]
	}
	if m.cutting && len(segs) > 0 {
		// Redo an interrupted TruncateBack before anything reads the tail.
		l.segs, l.spare, l.first = segs, spare, first
		if err := l.redoCut(m.cut); err != nil {
			closeAll(l.segs, l.spare)
			return err
		}
		segs, spare = l.segs, l.spare
	} else if m.cutting {
		// A repair removed every segment: nothing is left to cut, and the
		// intent must not outlive this Open, or the next one would cut
		// records appended from now on.
		if err := l.writeMeta(meta{first: first}); err != nil {
			closeAll(segs, spare)
			return err
		}
	}

	if len(segs) == 0 { // a new log (or one cut to nothing)
		s := spare
		spare = nil
		if s == nil {
			if l.nextSeq == 0 {
				l.nextSeq = 1
			}
			if s, err = l.prepareSegment(l.nextSeq); err != nil {
				return err
			}
			l.persist = s.mode
		}
		if err := s.activate(first); err != nil {
			s.close()
			return err
		}
		segs = []*segment{s}
	}
	l.segs, l.spare = segs, spare
	if err := guardFault("recovery", l.scanAll); err != nil {
		closeAll(l.segs, l.spare)
		l.segs, l.spare = nil, nil
		return err
	}
	last := l.segs[len(l.segs)-1]
	l.next = last.first + uint64(last.offs.Len())
	l.nextSeq = last.seq + 1
	if l.spare != nil && l.spare.seq != l.nextSeq {
		l.spare.close()
		l.spare = nil
	}
	if first > l.next {
		// TruncateFront past the end was interrupted after META: the log
		// is empty and numbering continues at first.
		if err := l.resetAt(first); err != nil {
			closeAll(l.segs, l.spare)
			l.segs, l.spare = nil, nil
			return err
		}
	}
	l.first = first
	l.written = l.next - 1
	l.setDurable(l.next-1, l.dOff)
	l.report.Segments = len(l.segs)
	l.report.Records = l.next - l.first
	return nil
}

// listSegments returns the sequence numbers of the directory's segment
// files, in order, and removes unfinished preparations.
func (l *Log) listSegments() ([]uint64, error) {
	entries, err := l.media.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("wal: read directory: %w", err)
	}
	var seqs []uint64
	var frees []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, freeSuffix) && e.Type().IsRegular() {
			frees = append(frees, name)
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) {
			if _, ok := parseSegName(strings.TrimSuffix(name, tmpSuffix) + segSuffix); ok {
				// An interrupted segment preparation: it never held a record.
				if err := l.media.Remove(filepath.Join(l.dir, name)); err != nil {
					return nil, fmt.Errorf("wal: remove %s: %w", name, err)
				}
				l.note("removed an unfinished segment preparation", "file", name)
				continue
			}
		}
		if seq, ok := parseSegName(name); ok && e.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, l.adoptFree(frees)
}

// recoverMeta reads META. A new log (no segment that holds or may hold
// records: hasData false) gets one with first index 1. A log with records
// and no valid META is corrupt; repair rebuilds META from the first
// segment (firstSeg, nil when its header is damaged). It reports whether
// META must be written, which the caller does only once the segments pass
// their checks, so that an Open that refuses the log changes nothing. A
// corrupt META without repair comes back as bad, with the META a repair
// would write, so that the caller can check the segments against it and
// report their damage first, naming the file.
func (l *Log) recoverMeta(firstSeg *segment, hasData bool) (m meta, write bool, bad, err error) {
	path := filepath.Join(l.dir, metaName)
	b, err := l.media.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return meta{}, false, nil, fmt.Errorf("wal: read %s: %w", path, err)
	}
	m, why := meta{first: 1}, ""
	if err == nil {
		if m, why = decodeMeta(b); why == "" {
			return m, false, nil, nil
		}
	} else if hasData {
		why = "missing"
	}
	if why != "" {
		cause := fmt.Errorf("%w: %s: %s", ErrCorrupt, path, why)
		m = meta{first: 1}
		if firstSeg != nil {
			m.first = firstSeg.first
		}
		if !l.opts.RepairCorruption {
			return m, false, cause, nil
		}
		l.report.Repaired = true
		if len(b) > 0 {
			l.dropped(path, 0, int64(len(b)), "repair: META replaced")
		}
		l.note("repair: rebuilt META from the first segment", "file", path, "first", m.first, "reason", cause)
	}
	return m, true, nil, nil
}

func (l *Log) writeMeta(m meta) error {
	var b [metaSize]byte
	encodeMeta(b[:], m)
	return l.media.ReplaceFile(filepath.Join(l.dir, metaName), b[:], l.opts.FileMode)
}

// scanAll verifies every record: sealed segments strictly, the last one with
// the torn-tail rules. It fills each segment's offsets and sets the tail.
// Sealed segments do not depend on each other, so they are scanned on every
// CPU at once; their verdicts are then taken in order, as a sequential scan
// would.
func (l *Log) scanAll() error {
	if len(l.segs) == 0 {
		return nil
	}
	sealed := len(l.segs) - 1
	type verdict struct {
		commit, bad int
		why         string
		err         error // a memory fault
	}
	res := make([]verdict, sealed)
	scan := func(i int) {
		s, stop := l.segs[i], l.segs[i+1].first-1
		v := &res[i]
		w := &fileWindow{f: s.f, buf: make([]byte, 256<<10), size: s.size()}
		v.err = guardFault(s.path, func() error {
			v.commit, v.bad, v.why = scanRecordsFrom(s, w, stop)
			return nil
		})
	}
	if workers := min(runtime.GOMAXPROCS(0), sealed); workers > 1 {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < sealed; i = int(next.Add(1) - 1) {
					scan(i)
				}
			}()
		}
		wg.Wait()
	} else {
		for i := range sealed {
			scan(i)
		}
	}
	for i := range sealed {
		s, stop, v := l.segs[i], l.segs[i+1].first-1, res[i]
		if v.err != nil {
			return v.err
		}
		if v.commit == v.bad && s.first+uint64(s.offs.Len()) == stop+1 {
			continue
		}
		err := fmt.Errorf("%w: %s offset %d: record %d: %s (segment is sealed)", ErrCorrupt, s.path, v.bad, s.first+uint64(s.offs.Len()), v.why)
		if !l.opts.RepairCorruption {
			return err
		}
		if err := l.cutAfter(i, v.commit, stop, err); err != nil {
			return err
		}
		return l.scanTail(l.segs[i])
	}
	return l.scanTail(l.segs[sealed])
}

// scanTail scans the last segment. A record that does not verify ends the
// log there. Complete-looking records after it are the unacknowledged part
// of a torn write when they end within the in-flight bound (or belong to
// the single oversized batch the writer allowed); they are dropped, and the
// dropped region is zeroed and persisted so they can never come back.
// A complete-looking record beyond the bound means the damage was not a
// torn write: ErrCorrupt, or with RepairCorruption the log is cut there.
func (l *Log) scanTail(s *segment) error {
	// Read the file, as for sealed segments, unless this is a read-only
	// view: there recovery's changes (the redo of a truncation) live only
	// in the private mapping.
	var src recSource = memSource(s.mem)
	if !l.opts.ReadOnly {
		src = &fileWindow{f: s.f, buf: make([]byte, 256<<10), size: s.size()}
	}
	commit, bad, why := scanRecordsFrom(s, src, math.MaxUint64)
	lastIdx := s.first + uint64(s.offs.Len()) - 1
	bound := s.bound()
	size := s.size()
	maxEnd, found, beyond := commit, 0, -1
	for o := commit; o+recHeaderSize <= size; o += recAlign {
		hb := src.at(o, recHeaderSize)
		if hb == nil {
			break
		}
		idx := le.Uint64(hb[8:])
		if idx <= lastIdx || idx-lastIdx > uint64(size/recHeaderSize) {
			continue
		}
		h := readRecHeader(hb)
		end := o + recHeaderSize + int(h.length)
		if h.flags != 0 || end > size || end < o {
			continue
		}
		if rec := src.at(o, recHeaderSize+int(h.length)); rec == nil || recordSum(rec[:recHeaderSize], rec[recHeaderSize:], s.hdr.salt) != h.sum {
			continue
		}
		found++
		if end-commit > bound && o-int(h.batchPos) > commit && beyond < 0 {
			beyond = o
		}
		maxEnd = max(maxEnd, end)
		o = (end+recAlign-1)&^(recAlign-1) - recAlign
	}
	if beyond >= 0 {
		err := fmt.Errorf("%w: %s offset %d: %s, and a valid record lies at offset %d, beyond the in-flight bound of %d bytes",
			ErrCorrupt, s.path, bad, why, beyond, bound)
		if !l.opts.RepairCorruption {
			return err
		}
		l.report.Repaired = true
		l.report.DroppedRecords += found
		end := lastNonZero(s.mem, commit, size)
		l.report.DroppedBytes += int64(end - commit)
		l.dropped(s.path, int64(commit), int64(end-commit), "repair: cut at the last good record")
		l.note("repair: cut the log at the last good record", "file", s.path, "offset", commit, "records", found, "reason", err)
		l.tail, l.wOff, l.dOff = commit, commit, commit
		return s.zero(commit, end)
	}
	end := lastNonZero(s.mem, commit, min(size, max(maxEnd, commit+bound)))
	if end > commit {
		l.report.TornTail = true
		l.report.DroppedRecords += found
		l.report.DroppedBytes += int64(end - commit)
		l.dropped(s.path, int64(commit), int64(end-commit), "torn tail")
		l.note("dropped a torn tail", "file", s.path, "offset", commit, "bytes", end-commit, "records", found, "why", why)
		if err := s.zero(commit, end); err != nil {
			return err
		}
	}
	l.tail, l.wOff, l.dOff = commit, commit, commit
	return nil
}

// scanRecords walks records from the segment's first index, stopping at the
// first one that does not verify or after index stop. It sets s.offs to the
// records of complete batches and returns the offset just past them
// (commit), the offset where the walk stopped (bad) and why it stopped.
func scanRecords(s *segment, stop uint64) (commit, bad int, why string) {
	return scanRecordsFrom(s, memSource(s.mem), stop)
}

// recSource gives a segment's bytes to the scan: through the mapping, or
// read from the file in windows.
type recSource interface {
	// at returns bytes [off, off+n) of the segment, or nil when they
	// cannot be read. The slice is valid until the next call.
	at(off, n int) []byte
}

type memSource []byte

func (m memSource) at(off, n int) []byte { return m[off : off+n] }

// fileWindow reads a segment file through a window of a few hundred KiB.
// On this project's virtual machine the first touch of a mapped page costs
// more than copying it: hashing a freshly mapped 256 MiB tmpfs file ran at
// 1.4-1.5 GB/s, reading it with pread into a 256 KiB buffer and hashing at
// 3.4-4.6 GB/s. Open scans sealed segments so.
type fileWindow struct {
	f        io.ReaderAt
	buf      []byte
	off, end int // the file's bytes [off, end) are in buf[:end-off]
	size     int
}

func (w *fileWindow) at(off, n int) []byte {
	if off >= w.off && off+n <= w.end {
		return w.buf[off-w.off : off-w.off+n]
	}
	if n > len(w.buf) {
		w.buf = make([]byte, n) // a record larger than the window
	}
	m := min(len(w.buf), w.size-off)
	k, _ := w.f.ReadAt(w.buf[:m], int64(off))
	if k < n {
		w.off, w.end = 0, 0
		return nil
	}
	w.off, w.end = off, off+k
	return w.buf[:n]
}

// scanRecordsFrom is scanRecords over src.
func scanRecordsFrom(s *segment, src recSource, stop uint64) (commit, bad int, why string) {
	s.offs.Truncate(0)
	off, idx := segHeaderSize, s.first
	commit, kept := off, 0
	batchStart, expectLeft := -1, uint32(0)
	for idx <= stop {
		h, reason := checkRecordFrom(s, src, off, idx)
		if reason == "" {
			switch {
			case batchStart < 0 && h.batchPos != 0:
				reason = "batch position set on a record that starts no batch"
			case batchStart >= 0 && (int(h.batchPos) != off-batchStart || h.batchLeft != expectLeft):
				reason = "record does not continue its batch"
			}
		}
		if reason != "" {
			s.offs.Truncate(kept)
			return commit, off, reason
		}
		s.offs.Append(uint32(off))
		if batchStart < 0 && h.batchLeft > 0 {
			batchStart = off
		}
		off += recSize(int(h.length))
		idx++
		if h.batchLeft == 0 {
			commit, kept, batchStart = off, s.offs.Len(), -1
		} else {
			expectLeft = h.batchLeft - 1
		}
	}
	s.offs.Truncate(kept)
	if batchStart >= 0 {
		return commit, off, "batch runs past the segment's last index"
	}
	return commit, off, ""
}

// checkRecordFrom verifies the record at off as the one with index idx.
func checkRecordFrom(s *segment, src recSource, off int, idx uint64) (recHeader, string) {
	if off+recHeaderSize > s.size() {
		return recHeader{}, "end of segment"
	}
	hb := src.at(off, recHeaderSize)
	if hb == nil {
		return recHeader{}, "unreadable"
	}
	h := readRecHeader(hb)
	switch {
	case h.index == 0 && h.sum == 0 && h.length == 0:
		return h, "end of records"
	case h.index != idx:
		return h, fmt.Sprintf("index %d where %d was expected", h.index, idx)
	case idx > maxIndex:
		return h, "index past the last one the format allows"
	case h.flags != 0:
		return h, "reserved header bits set"
	case off+recHeaderSize+int(h.length) > s.size():
		return h, fmt.Sprintf("length %d runs past the segment", h.length)
	}
	rec := src.at(off, recHeaderSize+int(h.length))
	if rec == nil {
		return h, "unreadable"
	}
	if recordSum(rec[:recHeaderSize], rec[recHeaderSize:], s.hdr.salt) != h.sum {
		return h, "checksum mismatch"
	}
	return h, ""
}

func recordSumOK(s *segment, off int, h recHeader) bool {
	end := off + recHeaderSize + int(h.length)
	return recordSum(s.mem[off:off+recHeaderSize], s.mem[off+recHeaderSize:end], s.hdr.salt) == h.sum
}

// lastNonZero returns the end of the last 8-byte word in mem[from:to] (to
// rounded up to a word) that is not zero, or from when every word is zero.
// from is 8-byte aligned.
func lastNonZero(mem []byte, from, to int) int {
	to = min((to+recAlign-1)&^(recAlign-1), len(mem))
	for o := to - recAlign; o >= from; o -= recAlign {
		if le.Uint64(mem[o:]) != 0 {
			return o + recAlign
		}
	}
	return from
}

// cutAfter repairs corruption in sealed segment i: every later segment file
// is removed (newest first) and segment i is cut at commit.
func (l *Log) cutAfter(i, commit int, stop uint64, cause error) error {
	s := l.segs[i]
	lost := int(stop - (s.first + uint64(s.offs.Len())) + 1)
	if err := l.removeFiles(l.closeAfter(i), cause); err != nil {
		return err
	}
	end := lastNonZero(s.mem, commit, s.size())
	l.report.Repaired = true
	l.report.DroppedRecords += lost
	l.report.DroppedBytes += int64(end - commit)
	if end > commit {
		l.dropped(s.path, int64(commit), int64(end-commit), "repair: cut at the last good record")
	}
	l.note("repair: cut the log at the last good record", "file", s.path, "offset", commit, "reason", cause)
	return s.zero(commit, end)
}

// removeFiles deletes segment files for a repair, newest first, and
// reports each.
func (l *Log) removeFiles(seqs []uint64, cause error) error {
	for j := len(seqs) - 1; j >= 0; j-- {
		path := l.segPath(seqs[j])
		if f, err := l.media.Open(path); err == nil {
			l.report.DroppedBytes += f.Size()
			l.dropped(path, 0, f.Size(), "repair: file removed")
			f.Close()
		}
		l.report.Repaired = true
		l.report.DroppedFiles = append(l.report.DroppedFiles, path)
		l.note("repair: removed segment file", "file", path, "reason", cause)
	}
	return l.removeSeqs(seqs)
}

// holdsNothing reports whether a segment file that cannot be opened as a
// segment certainly never held a record: it is empty or all zero, or its
// header is intact and it was never activated (the log writes records into
// a segment only after activating it durably).
func holdsNothing(media Media, path string, seq uint64) bool {
	f, err := media.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [segHeaderSize]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	if h, why := decodeSegHeader(b[:n]); why == "" && h.seq == seq {
		first := le.Uint64(b[activationOff:])
		return first == 0 || le.Uint64(b[activationOff+8:]) != activationCheck(h.salt, first)
	}
	buf := make([]byte, 1<<16)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		for _, c := range buf[:n] {
			if c != 0 {
				return false
			}
		}
		if err != nil {
			return errors.Is(err, io.EOF)
		}
	}
}

func closeAll(segs []*segment, spare *segment) {
	for _, s := range segs {
		s.close()
	}
	if spare != nil {
		spare.close()
	}
}

// droppedFiles reports segment files recovery is about to remove.
func (l *Log) droppedFiles(seqs []uint64, why string) {
	for _, seq := range seqs {
		path := l.segPath(seq)
		if f, err := l.media.Open(path); err == nil {
			l.report.DroppedBytes += f.Size()
			l.report.DroppedFiles = append(l.report.DroppedFiles, path)
			l.dropped(path, 0, f.Size(), why)
			f.Close()
		}
	}
}

// dropped records a byte range recovery discarded.
func (l *Log) dropped(path string, off, n int64, why string) {
	l.report.Dropped = append(l.report.Dropped, Extent{File: path, Offset: off, Length: n, Why: why})
}

// note records a recovery action in the report and the logger.
func (l *Log) note(msg string, args ...any) {
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Fprintf(&b, " %v=%v", args[i], args[i+1])
	}
	l.report.Reasons = append(l.report.Reasons, b.String())
	l.log(slog.LevelWarn, "wal: "+msg, append([]any{"dir", l.dir}, args...)...)
}
