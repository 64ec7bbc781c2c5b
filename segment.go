package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// segment is one mapped segment file.
type segment struct {
	seq  uint64
	path string
	f    MediaFile
	m    Mapping
	om   *osMapping  // m, when it is the OS mapping: the append path calls it directly
	pw   io.WriterAt // the file, when msync-mode appends can pwrite into it
	mem  []byte      // m.Bytes(): the whole file, mapped shared

	pins        atomic.Int32 // iterators inside the segment
	retired     atomic.Bool  // closed: unmap when the last pin goes
	releaseOnce sync.Once
	releaseErr  error
	hdr         segHeader
	mode        Persist  // PersistDAX, PersistCacheFlush or PersistMsync
	first       uint64   // index of the first record; 0 while not activated
	offs        offIndex // offsets of the segment's records, by index - first
}

const (
	segSuffix = ".seg"
	tmpSuffix = ".seg.tmp"
)

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segSuffix) }

// parseSegName returns the sequence number of a segment file name.
func parseSegName(name string) (uint64, bool) {
	num, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(num) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	return seq, err == nil && seq > 0
}

// errBadHeader marks a segment whose header does not describe its file.
var errBadHeader = errors.New("bad segment header")

// openSegment opens and maps a segment file and checks that its header
// describes it. want is as for MediaFile.Map.
func openSegment(media Media, path string, seq uint64, want Persist) (*segment, error) {
	f, err := media.Open(path)
	if err != nil {
		return nil, fmt.Errorf("wal: open segment: %w", err)
	}
	var hb [segHeaderSize]byte
	n, _ := f.ReadAt(hb[:], 0)
	h, why := decodeSegHeader(hb[:n])
	switch {
	case why != "":
	case h.seq != seq:
		why = fmt.Sprintf("header names segment %d", h.seq)
	case int64(h.size) != f.Size():
		why = fmt.Sprintf("header says %d bytes", h.size)
	}
	if why != "" {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %s (file size %d)", errBadHeader, path, why, f.Size())
	}
	m, err := f.Map(want)
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &segment{seq: seq, path: path, f: f, m: m, mem: m.Bytes(), hdr: h, mode: m.Persist()}
	s.om, _ = m.(*osMapping)
	if of, ok := f.(*osFile); ok && s.mode == PersistMsync && !of.private {
		s.pw = of.File
	}
	if len(s.mem) != int(h.size) {
		s.close()
		return nil, fmt.Errorf("%w: %s: mapped %d bytes, header says %d", errBadHeader, path, len(s.mem), h.size)
	}
	if first := le.Uint64(s.mem[activationOff:]); first != 0 &&
		le.Uint64(s.mem[activationOff+8:]) == activationCheck(h.salt, first) {
		s.first = first
	}
	return s, nil
}

// persist makes mem[off:off+n] durable under the segment's persistence mode.
func (s *segment) persist(off, n int) error {
	if n <= 0 {
		return nil
	}
	if s.mode == PersistMsync {
		return s.msync(off, n)
	}
	s.flush(off, n)
	return s.fence()
}

// msync makes mem[off:off+n] durable with the mapping's Sync.
func (s *segment) msync(off, n int) error {
	if err := s.m.Sync(off, n); err != nil {
		return fmt.Errorf("wal: msync %s at offset %d: %w", s.path, off, err)
	}
	return nil
}

// activate durably records that the segment's first record has index first.
// The log moves into a segment only through activate, and only once every
// record of the previous segment is durable.
func (s *segment) activate(first uint64) error {
	le.PutUint64(s.mem[activationOff:], first)
	le.PutUint64(s.mem[activationOff+8:], activationCheck(s.hdr.salt, first))
	if err := s.persist(activationOff, 16); err != nil {
		return err
	}
	s.first = first
	return nil
}

// zero clears mem[off:end] and makes it durable.
func (s *segment) zero(off, end int) error {
	if end <= off {
		return nil
	}
	clear(s.mem[off:end])
	return s.persist(off, end-off)
}

// flush starts write-back of the lines covering mem[off:off+n].
func (s *segment) flush(off, n int) int {
	if s.om != nil {
		return s.om.Flush(off, n)
	}
	return s.m.Flush(off, n)
}

// storeNT copies src to mem[off:] with non-temporal stores. The OS mapping
// is called directly so that src (often a header on the caller's stack)
// does not escape to the heap; another Media gets a copy.
func (s *segment) storeNT(off int, src []byte) int {
	if s.om != nil {
		return s.om.StoreNT(off, src)
	}
	return s.m.StoreNT(off, bytes.Clone(src))
}

// fence waits until the segment's flushes and non-temporal stores are
// durable, and reports one that failed (see Mapping.Fence).
func (s *segment) fence() error {
	err := error(nil)
	if s.om != nil {
		drain()
		err = s.om.flushErr()
	} else {
		err = s.m.Fence()
	}
	if err != nil {
		return fmt.Errorf("wal: persist %s: %w", s.path, err)
	}
	return nil
}

// size is the segment's length in bytes.
func (s *segment) size() int { return len(s.mem) }

// bound is the in-flight bound recorded in the segment's header, the one
// recovery judges its tail by, in bytes; a bound beyond the segment counts
// as the segment's size.
func (s *segment) bound() int { return int(min(s.hdr.bound, uint64(s.size()))) }

// close retires the segment: it is unmapped and its file closed at once,
// or, while an iterator has it pinned, when the last pin goes.
func (s *segment) close() error {
	s.retired.Store(true)
	if s.pins.Load() == 0 {
		return s.release()
	}
	return nil
}

// pin keeps the segment mapped until unpin, even if it is closed meanwhile.
// Pins are taken only under l.closeMu held shared, so never concurrently
// with close, which runs with it held exclusively or before the log is
// shared.
func (s *segment) pin() { s.pins.Add(1) }

func (s *segment) unpin() {
	if s.pins.Add(-1) == 0 && s.retired.Load() {
		s.release()
	}
}

func (s *segment) release() error {
	s.releaseOnce.Do(func() {
		err := s.m.Unmap()
		s.mem = nil
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
		s.releaseErr = err
	})
	return s.releaseErr
}

// offIndex holds the offsets of a segment's records in chunks of fixed
// size, so that appending one never copies those already there: a segment
// holds up to millions of records, and growing one flat slice meant
// copying megabytes (into fresh memory) on the append path.
type offIndex struct {
	chunks [][]uint32
	n      int
}

const (
	offChunkBits = 13 // 8192 offsets, 32 KiB, per chunk
	offChunkMask = 1<<offChunkBits - 1
)

// Len is the number of offsets.
func (x *offIndex) Len() int { return x.n }

// At returns offset i (0 <= i < Len).
func (x *offIndex) At(i int) uint32 { return x.chunks[i>>offChunkBits][i&offChunkMask] }

// Append adds an offset.
func (x *offIndex) Append(off uint32) {
	c := x.n >> offChunkBits
	if c == len(x.chunks) {
		x.chunks = append(x.chunks, make([]uint32, 1<<offChunkBits))
	}
	x.chunks[c][x.n&offChunkMask] = off
	x.n++
}

// Truncate keeps the first n offsets (n <= Len).
func (x *offIndex) Truncate(n int) { x.n = n }
