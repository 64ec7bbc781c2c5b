package wal

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// segment is one mapped segment file.
type segment struct {
	seq   uint64
	path  string
	f     *os.File
	mem   []byte // the whole file, mapped shared
	hdr   segHeader
	mode  Persist // PersistDAX, PersistCacheFlush or PersistMsync
	first uint64  // index of the first record; 0 while not activated
	offs  []uint32
	hw    *hw // how to flush, for the persistent-memory modes
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

// createSegmentFile makes a complete segment file: written under a temporary
// name, allocated and zero-filled in full (so that no later page fault has
// to allocate blocks, which on a MAP_SYNC mapping would mean SIGBUS when the
// disk is full), fsynced, renamed into place, and the directory fsynced.
func createSegmentFile(dir string, seq uint64, size int64, bound int64, mode os.FileMode) error {
	final := filepath.Join(dir, segName(seq))
	tmp := final[:len(final)-len(segSuffix)] + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("wal: create segment: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("wal: create segment %s: %w", final, err)
	}
	ferr := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if ferr != nil && !errors.Is(ferr, unix.EOPNOTSUPP) && !errors.Is(ferr, unix.ENOSYS) {
		return fail(ferr)
	}
	var salt uint64
	for salt == 0 {
		salt = rand.Uint64()
	}
	// On tmpfs fallocate already gives allocated, zeroed pages. Elsewhere
	// (ext4, xfs) it leaves unwritten extents, which a write fault would
	// have to convert: write the zeros so that the blocks are really there.
	zeroFill := ferr != nil || !isTmpfs(f)
	chunk := make([]byte, 1<<20)
	encodeSegHeader(chunk, segHeader{version: formatVersion, size: uint64(size), seq: seq, salt: salt, bound: uint64(bound)})
	for off := int64(0); off < size; off += int64(len(chunk)) {
		n := min(int64(len(chunk)), size-off)
		if !zeroFill {
			n = segHeaderSize
		}
		if _, err := f.WriteAt(chunk[:n], off); err != nil {
			return fail(err)
		}
		if !zeroFill {
			break
		}
		if off == 0 {
			clear(chunk[:segHeaderSize])
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wal: create segment %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wal: create segment %s: %w", final, err)
	}
	return syncDir(dir)
}

func isTmpfs(f *os.File) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &st) == nil && st.Type == unix.TMPFS_MAGIC
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: sync directory %s: %w", dir, err)
	}
	return nil
}

// errBadHeader marks a segment whose header does not describe its file.
var errBadHeader = errors.New("bad segment header")

// openSegment opens and maps a segment file. want is PersistAuto (try
// MAP_SYNC, fall back to a page-cache mapping), PersistDAX (MAP_SYNC or
// ErrNotDAX), PersistCacheFlush or PersistMsync.
func openSegment(path string, seq uint64, want Persist, h *hw) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: open segment: %w", err)
	}
	s, err := mapSegment(f, path, seq, want)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.hw = h
	return s, nil
}

func mapSegment(f *os.File, path string, seq uint64, want Persist) (*segment, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	var hb [segHeaderSize]byte
	n, _ := f.ReadAt(hb[:], 0)
	h, why := decodeSegHeader(hb[:n])
	switch {
	case why != "":
	case h.seq != seq:
		why = fmt.Sprintf("header names segment %d", h.seq)
	case int64(h.size) != st.Size():
		why = fmt.Sprintf("header says %d bytes, file has %d", h.size, st.Size())
	}
	if why != "" {
		return nil, fmt.Errorf("%w: %s: %s (file size %d)", errBadHeader, path, why, st.Size())
	}
	s := &segment{seq: seq, path: path, f: f, hdr: h}
	fd, size := int(f.Fd()), int(h.size)
	prot := unix.PROT_READ | unix.PROT_WRITE
	switch want {
	case PersistAuto, PersistDAX:
		s.mem, err = unix.Mmap(fd, 0, size, prot, unix.MAP_SHARED_VALIDATE|unix.MAP_SYNC|unix.MAP_POPULATE)
		if err == nil {
			s.mode = PersistDAX
			break
		}
		if want == PersistDAX {
			return nil, fmt.Errorf("%w: %s: mmap MAP_SYNC: %v", ErrNotDAX, path, err)
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("wal: mmap %s: %w", path, err)
		}
		want = PersistMsync
		fallthrough
	default:
		s.mem, err = unix.Mmap(fd, 0, size, prot, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("wal: mmap %s: %w", path, err)
		}
		s.mode = want
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
	if _, err := s.hw.flushRange(unsafe.Pointer(&s.mem[off]), uintptr(n)); err != nil {
		return fmt.Errorf("wal: flush %s at offset %d: %w", s.path, off, err)
	}
	drain()
	return nil
}

// msync writes back the pages covering mem[off:off+n] with MS_SYNC.
func (s *segment) msync(off, n int) error {
	ps := os.Getpagesize()
	start := off &^ (ps - 1)
	end := min((off+n+ps-1)&^(ps-1), len(s.mem))
	if err := unix.Msync(s.mem[start:end], unix.MS_SYNC); err != nil {
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

// prefault maps every page of a segment that holds no record yet writable,
// so that appends do not take a page fault each time they cross into a new
// page. On tmpfs it also writes the (already zero) data area once: there the
// first store to a fresh page is what makes the host back it, and costs
// several microseconds that would otherwise land on an append. Not used with
// msync, where it would only dirty page cache that the kernel must then
// write back.
func (s *segment) prefault() {
	if unix.Madvise(s.mem, unix.MADV_POPULATE_WRITE) != nil {
		ps := os.Getpagesize()
		for off := ps - 1; off < len(s.mem); off += ps {
			s.mem[off] = 0
		}
	}
	if isTmpfs(s.f) {
		clear(s.mem[segHeaderSize:])
	}
}

// size is the segment's length in bytes.
func (s *segment) size() int { return len(s.mem) }

func (s *segment) close() error {
	var err error
	if s.mem != nil {
		err = unix.Munmap(s.mem)
		s.mem = nil
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}
