package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// osMedia is the default Media: real files, mmap, and the CPU's cache
// write-back instructions chosen by hw.
type osMedia struct {
	hw *hw
	// trace, set by tests only, hears of every fsync, directory sync and
	// rename as it completes, in order: the durability order of this
	// layer, which neither the crash simulator (it replaces this layer)
	// nor killing the process (the page cache survives) can observe.
	trace func(op, path string)
}

func (m *osMedia) traced(op, path string) {
	if m.trace != nil {
		m.trace(op, path)
	}
}

func (m *osMedia) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }
func (m *osMedia) ReadDir(dir string) ([]fs.DirEntry, error)   { return os.ReadDir(dir) }
func (m *osMedia) Remove(path string) error                    { return os.Remove(path) }
func (m *osMedia) ReadFile(path string) ([]byte, error)        { return os.ReadFile(path) }

// Rename renames and fsyncs the directory.
func (m *osMedia) Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	m.traced("rename", newpath)
	return m.SyncDir(filepath.Dir(newpath))
}

// ReplaceFile writes data under a temporary name, fsyncs it, renames it
// over path and fsyncs the directory.
func (m *osMedia) ReplaceFile(path string, data []byte, perm fs.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("wal: write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		if err = f.Sync(); err == nil {
			m.traced("fsync", tmp)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err = os.Rename(tmp, path); err == nil {
			m.traced("rename", path)
		}
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wal: write %s: %w", path, err)
	}
	return m.SyncDir(filepath.Dir(path))
}

// Lock takes an exclusive flock on dir/LOCK without waiting. flock locks
// belong to the open file description, so a second Open in the same process
// is refused just like one from another process. The directory is locked
// too, which read-only users lock shared (they must not create LOCK where
// it is missing).
func (m *osMedia) Lock(dir string, perm fs.FileMode) (io.Closer, error) {
	path := filepath.Join(dir, lockName)
	f, err := flockFile(path, os.O_RDWR|os.O_CREATE, perm, unix.LOCK_EX, "")
	if err != nil {
		return nil, err
	}
	d, err := flockFile(dir, os.O_RDONLY, 0, unix.LOCK_EX, "read-only users have it open")
	if err != nil {
		f.Close()
		return nil, err
	}
	return lockPair{f, d}, nil // closing the descriptors releases the locks
}

// flockFile opens path and takes a flock of kind (unix.LOCK_EX or
// LOCK_SH) without waiting: ErrLocked, with who, when another holds it.
func flockFile(path string, flag int, perm fs.FileMode, kind int, who string) (*os.File, error) {
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, fmt.Errorf("wal: lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), kind|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if who != "" {
				return nil, fmt.Errorf("%w: %s (%s)", ErrLocked, path, who)
			}
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("wal: lock %s: %w", path, err)
	}
	return f, nil
}

// lockPair holds the flocks on LOCK and on the directory.
type lockPair struct{ file, dir *os.File }

func (p lockPair) Close() error {
	err := p.file.Close()
	if derr := p.dir.Close(); err == nil {
		err = derr
	}
	return err
}

// lockName is the file in a log directory that carries the advisory lock.
const lockName = "LOCK"

func (m *osMedia) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: sync directory %s: %w", dir, err)
	}
	m.traced("syncdir", dir)
	return nil
}

// CreateSegment writes the file under a temporary name, allocates and
// zero-fills it in full (so that no later page fault has to allocate a block
// or convert an unwritten extent, which on a MAP_SYNC mapping would mean
// SIGBUS when the disk is full), fsyncs it, renames it into place and fsyncs
// the directory.
func (m *osMedia) CreateSegment(path string, size int64, header []byte, perm fs.FileMode) error {
	tmp := strings.TrimSuffix(path, segSuffix) + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("wal: create segment: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("wal: create segment %s: %w", path, err)
	}
	ferr := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if ferr != nil && !errors.Is(ferr, unix.EOPNOTSUPP) && !errors.Is(ferr, unix.ENOSYS) {
		return fail(ferr)
	}
	// On tmpfs fallocate already gives allocated, zeroed pages. Elsewhere
	// (ext4, xfs) it leaves unwritten extents: write the zeros so that the
	// blocks are really there.
	zeroFill := ferr != nil || !isTmpfs(f)
	chunk := make([]byte, 1<<20)
	copy(chunk, header)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		n := min(int64(len(chunk)), size-off)
		if !zeroFill {
			n = int64(len(header))
		}
		if _, err := f.WriteAt(chunk[:n], off); err != nil {
			return fail(err)
		}
		if !zeroFill {
			break
		}
		if off == 0 {
			clear(chunk[:len(header)])
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	m.traced("fsync", tmp)
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wal: create segment %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wal: create segment %s: %w", path, err)
	}
	m.traced("rename", path)
	return m.SyncDir(filepath.Dir(path))
}

func isTmpfs(f *os.File) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &st) == nil && st.Type == unix.TMPFS_MAGIC
}

func (m *osMedia) Open(path string) (MediaFile, error) {
	f, err := m.open(path, false)
	if err != nil {
		return nil, err // not a nil *osFile in an interface
	}
	return f, nil
}

// open opens a segment file, read-only and mapped copy-on-write when
// private (Options.ReadOnly).
func (m *osMedia) open(path string, private bool) (*osFile, error) {
	flag := os.O_RDWR
	if private {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &osFile{File: f, size: st.Size(), hw: m.hw, private: private}, nil
}

type osFile struct {
	*os.File
	size    int64
	hw      *hw
	private bool // opened read-only: Map is copy-on-write (Options.ReadOnly)
}

func (f *osFile) Size() int64 { return f.size }

func (f *osFile) Map(want Persist) (Mapping, error) {
	fd, size := int(f.Fd()), int(f.size)
	prot := unix.PROT_READ | unix.PROT_WRITE
	m := &osMapping{f: f, hw: f.hw}
	var err error
	if f.private {
		// Stores (recovery zeroing a torn tail in its view) stay in this
		// process; msync of a private mapping writes nothing back.
		if m.mem, err = unix.Mmap(fd, 0, size, prot, unix.MAP_PRIVATE); err != nil {
			return nil, fmt.Errorf("wal: mmap %s: %w", f.Name(), err)
		}
		m.mode = PersistMsync
		return m, nil
	}
	switch want {
	case PersistAuto, PersistDAX:
		m.mem, err = unix.Mmap(fd, 0, size, prot, unix.MAP_SHARED_VALIDATE|unix.MAP_SYNC|unix.MAP_POPULATE)
		if err == nil {
			m.mode = PersistDAX
			return m, nil
		}
		if want == PersistDAX {
			return nil, fmt.Errorf("%w: %s: mmap MAP_SYNC: %v", ErrNotDAX, f.Name(), err)
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("wal: mmap %s: %w", f.Name(), err)
		}
		want = PersistMsync
	}
	m.mem, err = unix.Mmap(fd, 0, size, prot, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("wal: mmap %s: %w", f.Name(), err)
	}
	m.mode = want
	return m, nil
}

type osMapping struct {
	f     *osFile
	mem   []byte
	mode  Persist
	hw    *hw
	flerr atomic.Pointer[error] // the first failed flush (an msync on the portable path)
}

func (m *osMapping) Bytes() []byte    { return m.mem }
func (m *osMapping) Persist() Persist { return m.mode }

func (m *osMapping) Fence() error {
	drain()
	return m.flushErr()
}

// flushErr is the first error of a Flush or StoreNT, or nil.
func (m *osMapping) flushErr() error {
	if p := m.flerr.Load(); p != nil {
		return *p
	}
	return nil
}

// flushed keeps err, the result of a flush, for Fence to report. Small
// enough to inline: the append path pays one compare.
func (m *osMapping) flushed(err error) {
	if err != nil {
		m.keepFlushErr(err)
	}
}

func (m *osMapping) keepFlushErr(err error) {
	// A new variable: taking err's address would move it to the heap on
	// every call, an allocation per append.
	kept := fmt.Errorf("wal: flush %s: %w", m.f.Name(), err)
	m.flerr.CompareAndSwap(nil, &kept)
}

func (m *osMapping) Flush(off, n int) int {
	if n <= 0 {
		return 0
	}
	k, err := m.hw.flushRange(unsafe.Pointer(&m.mem[off]), uintptr(n))
	m.flushed(err)
	return k
}

func (m *osMapping) StoreNT(off int, src []byte) int {
	if len(src) == 0 {
		return 0
	}
	_ = m.mem[off+len(src)-1]
	k, err := m.hw.copyNT(unsafe.Pointer(&m.mem[off]), unsafe.Pointer(&src[0]), uintptr(len(src)))
	m.flushed(err)
	return k
}

func (m *osMapping) Sync(off, n int) error {
	if n <= 0 {
		return nil
	}
	start := off &^ (int(pageSize) - 1)
	end := min((off+n+int(pageSize)-1)&^(int(pageSize)-1), len(m.mem))
	return unix.Msync(m.mem[start:end], unix.MS_SYNC)
}

func (m *osMapping) Unmap() error {
	if m.mem == nil {
		return nil
	}
	err := unix.Munmap(m.mem)
	m.mem = nil
	return err
}

// prefault maps every page writable so that appends do not take a page
// fault each time they cross into a new page, and then stores to every
// page once through this mapping: on a new tmpfs file (fresh) it writes
// the whole (still zero) data area, since there the first store to a fresh
// page is what makes the host back it; otherwise one word per page, which
// is what a virtual machine with shadow paging needs to set up its own
// mapping of the page (measured: without it, about one append in a hundred
// takes several microseconds more on a recycled segment). Only for a
// segment that holds no record yet (the data area is zero), and not with
// msync, where it would only dirty page cache.
func (m *osMapping) prefault(from int, fresh bool) {
	if m.mode == PersistMsync {
		return
	}
	unix.Madvise(m.mem, unix.MADV_POPULATE_WRITE) // a hint: the stores below do it otherwise
	if fresh && isTmpfs(m.f.File) {
		clear(m.mem[from:])
		return
	}
	for off := (from + int(pageSize) - 1) &^ (int(pageSize) - 1); off < len(m.mem); off += int(pageSize) {
		m.mem[off] = 0 // every byte past the header is still zero
	}
}
