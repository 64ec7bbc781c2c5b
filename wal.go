// Package wal is a write-ahead log for persistent memory.
//
// A log is a directory of fixed-size, fully preallocated segment files,
// mapped into memory. Append copies a checksummed record into the mapping
// and makes it durable before returning: with CPU cache write-back and one
// fence on persistent memory (a MAP_SYNC mapping on a DAX filesystem), or
// with msync on ordinary storage. Open recovers the log after a crash: a
// torn tail is dropped, real corruption is refused with ErrCorrupt, and a
// record that recovery discarded never comes back.
//
// FORMAT.md in the module describes the on-media format byte by byte and
// the durability argument.
package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Errors returned by the log. They are wrapped with context (file, offset,
// index); test for them with errors.Is.
var (
	// ErrNotFound: the index is outside [FirstIndex, LastIndex].
	ErrNotFound = errors.New("wal: record not found")
	// ErrCorrupt: the log's files hold damage that is not a torn tail.
	ErrCorrupt = errors.New("wal: log is corrupt")
	// ErrLocked: another Log, in this process or another, has the directory open.
	ErrLocked = errors.New("wal: log directory is locked by another user")
	// ErrClosed: the Log was closed.
	ErrClosed = errors.New("wal: log is closed")
	// ErrTooLarge: the record or batch does not fit in one segment.
	ErrTooLarge = errors.New("wal: record too large for a segment")
	// ErrNotDAX: PersistDAX was asked for and the file cannot be mapped with MAP_SYNC.
	ErrNotDAX = errors.New("wal: MAP_SYNC not supported (not a DAX filesystem)")
	// ErrFailed: making data durable failed (an msync or flush error). The
	// log refuses every append from then on, since it can no longer tell what
	// reached the media; reopen it to recover.
	ErrFailed = errors.New("wal: persistence failed; reopen the log")
	// ErrReadOnly: the log was opened with Options.ReadOnly and the call
	// would change it.
	ErrReadOnly = errors.New("wal: log is open read-only")
	// ErrIndexExhausted: the record would get an index above
	// math.MaxUint64-1, the last one the format allows. Only a log moved
	// there by TruncateFront can reach it.
	ErrIndexExhausted = errors.New("wal: no index left for the record")
)

// Persist selects how appends are made durable.
type Persist int

const (
	// PersistAuto maps segments with MAP_SHARED_VALIDATE|MAP_SYNC and, where
	// the kernel refuses (no DAX filesystem, or Linux before 4.15), falls back
	// to PersistMsync.
	PersistAuto Persist = iota
	// PersistDAX requires MAP_SYNC: durability by CPU cache flush and fence,
	// with the filesystem's metadata kept durable by the kernel.
	PersistDAX
	// PersistCacheFlush maps without MAP_SYNC and makes appends durable by
	// cache flush and fence alone, with no system call. It is correct only on
	// memory the platform keeps persistent; it is how tests and benchmarks
	// run the persistent-memory path on tmpfs (like PMDK's PMEM_IS_PMEM_FORCE=1).
	PersistCacheFlush
	// PersistMsync makes appends durable with msync(MS_SYNC) of the written
	// pages: the path for ordinary disks.
	PersistMsync
)

// String returns the name accepted by ParsePersist and WAL_PERSIST.
func (p Persist) String() string {
	switch p {
	case PersistAuto:
		return "auto"
	case PersistDAX:
		return "dax"
	case PersistCacheFlush:
		return "cacheflush"
	case PersistMsync:
		return "msync"
	}
	return fmt.Sprintf("Persist(%d)", int(p))
}

// ParsePersist parses "auto", "dax", "cacheflush" or "msync".
func ParsePersist(s string) (Persist, error) {
	for p := PersistAuto; p <= PersistMsync; p++ {
		if strings.EqualFold(s, p.String()) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("wal: unknown persistence mode %q (want auto, dax, cacheflush or msync)", s)
}

// Options configure Open. The zero value (or a nil *Options) gives the
// defaults. Open never modifies the Options it is given.
type Options struct {
	// SegmentSize is the size of new segment files: a multiple of 4 KiB
	// from 1 MiB to 4 GiB - 4 KiB (offsets are 32 bits). Default 64 MiB.
	// Existing segments keep the size they were created with; what fits in
	// an append (ErrTooLarge) is judged by this size.
	SegmentSize int64
	// Persist selects the persistence path. The environment variable
	// WAL_PERSIST (auto, dax, cacheflush, msync) overrides it; any other
	// value of it makes every Open fail, read-only ones too.
	Persist Persist
	// InFlightBound is how far past the durable point the writer may have
	// data in flight, in bytes (default 1 MiB, at least 4 KiB; a bound
	// beyond SegmentSize acts as SegmentSize). Recovery uses it to tell a
	// torn tail from corruption; see FORMAT.md. Each segment records the
	// bound it was made with, and appends into it keep the smaller of that
	// and this one.
	InFlightBound int64
	// RepairCorruption makes Open cut the log at the last good record before
	// corruption instead of failing with ErrCorrupt. What was dropped is
	// logged and reported by Log.Recovery.
	RepairCorruption bool
	// Logger receives recovery reports and repairs. Nil logs nothing. The
	// log calls it with its own locks held and from its background
	// goroutines: a handler must not call back into the Log, and one that
	// panics loses that message but cannot leave the Log locked or crash
	// the process (the panic is recovered and dropped).
	Logger *slog.Logger
	// FileMode is the permission of new files (default 0600).
	FileMode os.FileMode
	// RecycleSegments is how many emptied segment files (of TruncateFront)
	// are kept and reused for new segments instead of creating files; 0,
	// the default, removes them. A reused file is zeroed and given a new
	// salt in the background before it becomes a segment, so its old
	// records can never reappear (FORMAT.md); what reuse saves is the
	// allocation of the file's blocks or pages, which on tmpfs, DAX and in
	// virtual machines is most of the cost of a new segment. At most
	// 65536. A file is taken for the next segment as soon as the log
	// prepares one, so Stats.FreeSegments can fall without an append.
	RecycleSegments int
	// Media is the storage the log lives on. Nil means the operating
	// system's files and mmap. Package github.com/pmwal/wal/fuzz provides a
	// Media that simulates power failures under the real log code.
	Media Media
	// ReadOnly opens an existing log without changing anything on the
	// media: for inspection tools and backups. Open takes a shared lock
	// (so it fails with ErrLocked while a writer has the log open, and a
	// writer fails with ErrLocked while it is held), maps the segments
	// copy-on-write, and runs the same recovery a writer would, in this
	// process's view only: Recovery reports what a writer's Open would
	// drop (a torn tail, or with RepairCorruption the cut), and reads see
	// exactly the records a writer would keep. Append, AppendBatch and the
	// truncations fail with ErrReadOnly. A directory that holds no log is
	// an error wrapping fs.ErrNotExist. Persist is not checked against the
	// file system (no ErrNotDAX): the private mappings are PersistMsync,
	// and Log.Persist says so.
	ReadOnly bool
}

// RecoveryReport says what Open found and what it discarded.
type RecoveryReport struct {
	Segments       int           // segment files in use after recovery
	Records        uint64        // records kept
	TornTail       bool          // an incomplete tail was dropped
	Repaired       bool          // corruption was cut away (RepairCorruption)
	DroppedRecords int           // complete-looking records discarded (unacknowledged tail or after corruption)
	DroppedBytes   int64         // bytes zeroed or removed
	DroppedFiles   []string      // files removed
	Dropped        []Extent      // every byte range zeroed or file removed, in the order recovery dropped them
	Reasons        []string      // one line per action taken
	Duration       time.Duration // time spent in recovery
}

// Extent is a byte range of a file that recovery discarded. A removed file
// is one extent from offset 0 over its whole length.
type Extent struct {
	File   string // path of the file
	Offset int64  // first byte dropped
	Length int64  // bytes dropped
	Why    string // torn tail, repair of corruption, or a rebuilt META
}

// Log is a write-ahead log. All methods are safe for concurrent use.
type Log struct {
	dir      string
	opts     Options
	persist  Persist
	lockFile io.Closer
	media    Media
	report   RecoveryReport
	logger   *slog.Logger
	hw       hw // flush instruction, eADR, non-temporal threshold

	// closeMu is held shared by every read that touches a mapping and
	// exclusively by Close and the truncations, so nothing is unmapped
	// under a reader. Appends do not take it (two atomic operations less
	// on the append path): they count themselves in inFlight, and Close
	// and the truncations, holding closeMu, wait for inFlight to drain
	// with quiet set, which holds new reservations off (see quiesce).
	closeMu sync.RWMutex
	// truncMu serialises the truncations, so that one can write META
	// without holding off appends.
	truncMu sync.Mutex

	recovering bool      // Open is recovering: report what the truncations' redo drops
	cuts       uint64    // back truncations done, for tailers (changed with closeMu held exclusively)
	cutMarks   []cutMark // the cut points of recent ones, for tailers; see cutBelow
	cutsLost   uint64    // the newest cut count whose mark was dropped from cutMarks

	mu     sync.Mutex
	cond   sync.Cond // signalled when durable advances, a reservation completes, or the log fails/closes
	closed bool
	failed error

	segs    []*segment // activated segments, oldest first; the last is active
	spare   *segment   // prepared next segment
	prepCh  chan prepResult
	nextSeq uint64

	// Free segment files for reuse (Options.RecycleSegments): taken by the
	// background preparation, given by truncations, so under their own lock.
	poolMu   sync.Mutex
	pool     []string
	recycled uint64 // segments made from free files

	first uint64 // FirstIndex
	next  uint64 // next index to reserve
	tail  int    // next free offset in the active segment

	// In-flight reservations, in index order, as a ring of seq numbers.
	ring    []resv
	rhead   uint64 // seq of the oldest unfinished reservation
	rseq    uint64 // next reservation seq
	written uint64 // every index <= written is written (and, with cache flush, durable)
	wOff    int    // offset in the active segment just past index written
	durable uint64 // every index <= durable is durable: LastIndex
	dOff    int
	syncing bool // an msync leader is at work

	largeWaiting  int // reservations larger than the in-flight bound waiting in reserve
	resumeWaiting int // appends waiting in fastResume for the fast path to reopen

	// Group commit (msync): see gatherMore.
	inFlight    int           // appenders between reserve and commit's return
	quiet       int           // Close or a truncation waits for inFlight to drain: reserve waits
	roundPeak   int           // most appenders in flight since the last sync started
	lastPeak    int           // roundPeak of the round before
	syncedSeq   uint64        // every reservation before it was written when a sync started
	lastSync    time.Duration // how long the last sync took
	gatherTimer *time.Timer   // wakes a gathering leader
	gatherWaits uint64        // times a leader waited for more records (tests)
	gatherCap   time.Duration // tests: the wait's limit instead of half the last sync

	flushedLines uint64 // cache lines written back by appends (tests check none is redundant)
	stats        Stats  // counters, under mu
	// grew is closed (and replaced) whenever LastIndex advances, for
	// tailing readers; nil until one waits.
	grew chan struct{}

	syncHook func() error // tests: fail the next group commit

	fast fastPath // the lock-free append path: see fastpath.go
}

type resv struct {
	last uint64
	end  int
	done bool
}

type prepResult struct {
	seg *segment
	err error
}

func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.SegmentSize == 0 {
		c.SegmentSize = defaultSegmentSize
	}
	if c.SegmentSize < minSegmentSize || c.SegmentSize > maxSegmentSize || c.SegmentSize%segAlign != 0 {
		return c, fmt.Errorf("wal: SegmentSize %d: must be a multiple of 4096 from 1 MiB to 4 GiB - 4 KiB", c.SegmentSize)
	}
	if c.InFlightBound == 0 {
		c.InFlightBound = defaultInFlightBound
	}
	if c.InFlightBound < 4096 {
		return c, fmt.Errorf("wal: InFlightBound %d: must be at least 4096", c.InFlightBound)
	}
	c.InFlightBound = min(c.InFlightBound, c.SegmentSize)
	if c.RecycleSegments < 0 || c.RecycleSegments > 1<<16 {
		return c, fmt.Errorf("wal: RecycleSegments %d: must be from 0 to 65536", c.RecycleSegments)
	}
	if c.FileMode == 0 {
		c.FileMode = 0o600
	}
	if env := os.Getenv("WAL_PERSIST"); env != "" {
		p, err := ParsePersist(env)
		if err != nil {
			return c, fmt.Errorf("WAL_PERSIST: %w", err)
		}
		c.Persist = p
	}
	if c.Persist < PersistAuto || c.Persist > PersistMsync {
		return c, fmt.Errorf("wal: invalid Persist %v", c.Persist)
	}
	return c, nil
}

// Open opens the log in dir, creating the directory and an empty log if
// needed, and recovers it. opts may be nil for the defaults.
func Open(dir string, opts *Options) (*Log, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	dirMode := o.FileMode.Perm() | 0o700
	if o.FileMode&0o040 != 0 {
		dirMode |= 0o010
	}
	if o.FileMode&0o004 != 0 {
		dirMode |= 0o001
	}
	h, err := resolveHW("/sys")
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, opts: o, logger: o.Logger, hw: h, media: o.Media}
	if l.media == nil {
		l.media = &osMedia{hw: &l.hw}
	}
	if o.ReadOnly {
		l.media = newReadOnlyMedia(l.media)
	}
	l.cond.L = &l.mu
	if err := mkdirDurable(l.media, dir, dirMode, o.ReadOnly); err != nil {
		return nil, err
	}
	if l.lockFile, err = l.media.Lock(dir, o.FileMode); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.report.Duration = time.Since(start)
	if l.spare == nil && !o.ReadOnly {
		l.startPrepare()
	}
	return l, nil
}

// mkdirDurable creates dir and its missing parents, and syncs the parent
// of each directory it created above dir, so that a crash cannot take away
// the directory that holds acknowledged records (a new entry in a
// directory is durable only once the directory is synced). dir's own entry
// is synced by recover, for every new log, whoever created the directory.
// The Media says which are missing: its paths need not be the host's.
func mkdirDurable(m Media, dir string, perm fs.FileMode, readOnly bool) error {
	var made []string
	if !readOnly {
		for d := filepath.Clean(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
			if _, err := m.ReadDir(d); !errors.Is(err, fs.ErrNotExist) {
				break
			}
			made = append(made, d)
		}
	}
	if err := m.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	for _, d := range made[min(1, len(made)):] { // made[0] is dir: see recover
		if err := m.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// Persist reports the persistence path in effect: PersistDAX when the
// segments are mapped with MAP_SYNC, otherwise PersistCacheFlush or
// PersistMsync. It never returns PersistAuto.
func (l *Log) Persist() Persist { return l.persist }

// Recovery reports what Open found and discarded.
func (l *Log) Recovery() RecoveryReport {
	r := l.report
	r.DroppedFiles = append([]string(nil), r.DroppedFiles...)
	r.Dropped = append([]Extent(nil), r.Dropped...)
	r.Reasons = append([]string(nil), r.Reasons...)
	return r
}

// Hardware reports how this Log makes appends durable on the persistent
// memory paths: flush instruction, eADR, non-temporal threshold and how
// an append publishes itself.
func (l *Log) Hardware() Hardware { return l.hw.describe() }

// FirstIndex returns the index of the first record. For an empty log it is
// one more than LastIndex.
func (l *Log) FirstIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// LastIndex returns the index of the last durable record, or FirstIndex()-1
// when the log is empty.
func (l *Log) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.catchUp()
	return l.durable
}

// Append writes data as the next record and returns its index once the
// record, and every record before it, is durable. data may be empty. A
// record larger than a segment can hold gives ErrTooLarge.
func (l *Log) Append(data []byte) (uint64, error) {
	if first, err, ok := l.appendOne(data); ok {
		return first, err
	}
	return l.append(data, nil)
}

// AppendBatch writes records as consecutive records and returns the index of
// the first once all of them are durable. After a crash the batch is
// present whole or not at all. The batch must fit in one segment (else
// ErrTooLarge, and nothing is written). An empty batch writes nothing and
// returns the index the next record will get (ErrIndexExhausted when none
// can).
func (l *Log) AppendBatch(records [][]byte) (uint64, error) {
	if len(records) == 0 {
		if l.opts.ReadOnly {
			return 0, l.refuse(ErrReadOnly)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return 0, ErrClosed
		}
		if l.failed != nil {
			return 0, l.failed
		}
		l.catchUp()
		if l.next > maxIndex {
			return 0, fmt.Errorf("%w: no record can follow index %d", ErrIndexExhausted, l.next-1)
		}
		return l.next, nil
	}
	return l.append(nil, records)
}

// append is the one write path: a single record (one) or a batch (many).
func (l *Log) append(one []byte, many [][]byte) (uint64, error) {
	if l.opts.ReadOnly {
		return 0, l.refuse(ErrReadOnly)
	}
	total, count := 0, 1
	if many == nil {
		total = recSize(len(one))
		if len(one) > int(l.opts.SegmentSize) {
			return 0, l.refuse(fmt.Errorf("%w: %d bytes", ErrTooLarge, len(one)))
		}
	} else {
		count = len(many)
		for _, r := range many {
			if len(r) > int(l.opts.SegmentSize) {
				return 0, l.refuse(fmt.Errorf("%w: a %d-byte record", ErrTooLarge, len(r)))
			}
			total += recSize(len(r))
		}
		if uint64(count) > 1<<32-1 {
			return 0, l.refuse(fmt.Errorf("%w: %d records in one batch", ErrTooLarge, count))
		}
	}
	if total > int(l.opts.SegmentSize)-segHeaderSize {
		return 0, l.refuse(fmt.Errorf("%w: %d bytes with headers, segments hold %d", ErrTooLarge, total, l.opts.SegmentSize-segHeaderSize))
	}
	if first, err, ok := l.appendFast(one, many, total); ok {
		return first, err
	}
	if l.fastResume(total, uint64(count)) {
		if first, err, ok := l.appendFast(one, many, total); ok {
			return first, err
		}
	}
	// No closeMu: the reservation counts this append in l.inFlight until
	// commit returns, and nothing unmaps the segment before that.
	seg, off, first, rs, err := l.reserve(total, one, many)
	if err != nil {
		return 0, err
	}
	last := first + uint64(count) - 1
	committed := false
	defer func() {
		if !committed {
			// A panic before the commit (a Media that panics; a memory
			// fault is an error, not a panic): fail the log, so that Close,
			// the truncations and later appends, which wait for this
			// append, get on; the panic goes on up.
			l.commit(rs, last, 0, fmt.Errorf("%w at index %d", errAppendPanicked, first))
		}
	}()
	// Copy, checksum and flush outside the lock.
	var flushed int
	perr := guardFault(seg.path, func() (err error) {
		flushed, err = l.writeRecords(seg, off, first, one, many)
		return err
	})
	committed = true
	return first, l.commit(rs, last, flushed, perr)
}

// errAppendPanicked is the cause, under ErrFailed, of a log failed by an
// append that panicked between its reservation and its commit.
var errAppendPanicked = errors.New("an append panicked before its records were written")

// refuse is the error for an append refused before it reserves anything
// (too large, or the log is read-only), unless the log is closed or
// failed: that error comes first, as for any other call. Off the append
// path, so the checks before it need no lock.
func (l *Log) refuse(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.failed != nil {
		return l.failed
	}
	return err
}

// writeRecords writes one record (one) or a batch (many) at off and, on the
// persistent-memory paths, makes it durable: payloads of at least the
// non-temporal threshold go out with non-temporal stores, the rest with
// plain stores whose lines are written back, each line once, followed by
// one fence for the whole batch. With msync it only copies; commit syncs.
func (l *Log) writeRecords(seg *segment, off int, first uint64, one []byte, many [][]byte) (flushed int, err error) {
	msync := seg.mode == PersistMsync
	ntMin := l.hw.ntMin
	if msync {
		ntMin = -1
	}
	salt, mem := seg.hdr.salt, seg.mem
	if msync && seg.pw != nil {
		return 0, writeRecordsPwrite(seg, off, first, one, many)
	}
	pending := off // start of plain-stored bytes not yet flushed
	p := off
	count := 1
	if many != nil {
		count = len(many)
	}
	for i := 0; i < count; i++ {
		data := one
		if many != nil {
			data = many[i]
		}
		n := recSize(len(data))
		left, pos := uint32(count-1-i), uint32(p-off)
		if ntMin < 0 || len(data) < ntMin {
			putRecord(mem[p:p+n], salt, first+uint64(i), data, left, pos)
			p += n
			continue
		}
		if p > pending {
			flushed += seg.flush(pending, p-pending)
		}
		if seg.om != nil {
			f, err := l.storeRecordNT(seg, p, first+uint64(i), data, left, pos)
			flushed += f
			if err != nil {
				return flushed, err
			}
		} else {
			var hdr [recHeaderSize]byte
			encodeRecHeader(hdr[:], salt, first+uint64(i), data, left, pos)
			flushed += seg.storeNT(p, hdr[:])
			whole := len(data) &^ (recAlign - 1)
			if whole > 0 {
				flushed += seg.storeNT(p+recHeaderSize, data[:whole])
			}
			if whole < len(data) { // the last partial word, zero padded
				var w [recAlign]byte
				copy(w[:], data[whole:])
				flushed += seg.storeNT(p+recHeaderSize+whole, w[:])
			}
		}
		p += n
		pending = p
	}
	if msync {
		return 0, nil
	}
	if p > pending {
		flushed += seg.flush(pending, p-pending)
	}
	return flushed, seg.fence()
}

// storeRecordNT stores one record at p of a segment this process maps
// (seg.om), with non-temporal stores: the payload hashed in the pass that
// stores it, then the header. Durable after a fence.
func (l *Log) storeRecordNT(seg *segment, p int, index uint64, data []byte, left, pos uint32) (flushed int, err error) {
	// An empty payload may start at the segment's end: no address.
	ps := emptySum
	if len(data) > 0 {
		if ps, err = l.hw.hashStoreNT(unsafe.Pointer(&seg.mem[p+recHeaderSize]), data); err != nil {
			return 0, fmt.Errorf("wal: write %s at offset %d: %w", seg.path, p, err)
		}
	}
	var hdr [recHeaderSize]byte
	encodeRecHeaderSum(hdr[:], seg.hdr.salt, index, len(data), left, pos, ps)
	return seg.storeNT(p, hdr[:]), nil
}

// writeOne is writeRecords for the append path's common case: one record
// on a segment this process maps, at or above the non-temporal threshold.
// It makes as few stores as it can: x86 holds every store that follows a
// fence until the stores before the fence are complete, so an append that
// makes few finds room in the store buffer while the previous one's
// records drain, and overlaps that drain instead of waiting for it.
//
// sum is the payload's xxhash64 when hashed, which appendOne computes
// before it reserves; otherwise the payload is hashed in the pass that
// stores it.
func (l *Log) writeOne(seg *segment, off int, index uint64, data []byte, sum uint64, hashed bool) (flushed int, err error) {
	mem := seg.mem
	_ = mem[off+recSize(len(data))-1]
	ps := sum
	switch {
	case len(data) == 0:
		// It may start at the segment's end: no address.
		ps = emptySum
	case !hashed:
		ps, _ = l.hw.hashStoreNT(unsafe.Pointer(&mem[off+recHeaderSize]), data) // no error: not msync
	default:
		whole := len(data) &^ (recAlign - 1)
		if whole > 0 {
			storeNT(unsafe.Pointer(&mem[off+recHeaderSize]), unsafe.Pointer(&data[0]), uintptr(whole))
		}
		if whole < len(data) { // the last partial word, zero padded
			var w [recAlign]byte
			copy(w[:], data[whole:])
			storeNT(unsafe.Pointer(&mem[off+recHeaderSize+whole]), unsafe.Pointer(&w[0]), recAlign)
		}
	}
	var hdr [recHeaderSize]byte
	encodeRecHeaderSum(hdr[:], seg.hdr.salt, index, len(data), 0, 0, ps)
	// off is 8-byte aligned (recAlign), so storeNT leaves no plain-stored
	// head or tail to write back.
	storeNT(unsafe.Pointer(&mem[off]), unsafe.Pointer(&hdr[0]), recHeaderSize)
	drain()
	if err := seg.om.flushErr(); err != nil {
		return 0, fmt.Errorf("wal: persist %s: %w", seg.path, err)
	}
	return 0, nil
}

// direct reports whether a record of n bytes goes out with non-temporal
// stores and a fence, with no write-back and no msync (writeOne).
func (h *hw) direct(n int) bool {
	return h.ntMin >= 0 && n >= h.ntMin && h.flush != flushMsync
}

// wbufs are the buffers writeRecordsPwrite builds records in.
var wbufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// writeRecordsPwrite writes the records of an msync-mode append with one
// pwrite into the file (the page cache the mapping shares) instead of
// storing them through the mapping. Measured on this project's ext4 disk
// with 96-byte appends, each followed by its sync: stores into the mapping
// then msync 1.03-1.10 ms, pwrite then fdatasync 0.40-0.46 ms. A store
// into a page that writeback has just cleaned takes a write fault into the
// file system; pwrite does not.
func writeRecordsPwrite(seg *segment, off int, first uint64, one []byte, many [][]byte) error {
	total := 0
	if many == nil {
		total = recSize(len(one))
	} else {
		for _, r := range many {
			total += recSize(len(r))
		}
	}
	bp := wbufs.Get().(*[]byte)
	defer wbufs.Put(bp)
	if cap(*bp) < total {
		*bp = make([]byte, 0, total)
	}
	buf := (*bp)[:total]
	if many == nil {
		putRecord(buf, seg.hdr.salt, first, one, 0, 0)
	} else {
		p := 0
		for i, r := range many {
			n := recSize(len(r))
			putRecord(buf[p:p+n], seg.hdr.salt, first+uint64(i), r, uint32(len(many)-1-i), uint32(p))
			p += n
		}
	}
	if _, err := seg.pw.WriteAt(buf, int64(off)); err != nil {
		return fmt.Errorf("wal: write %s at offset %d: %w", seg.path, off, err)
	}
	return nil
}

// reserve assigns indexes and space for total bytes of count records,
// rolling over to the next segment when the active one is full, and keeping
// the in-flight bound: nothing is written further than the bound past the
// durable point, except a single reservation larger than the bound, which
// waits until everything before it is durable. The bound is InFlightBound,
// or the one in the active segment's header where that is smaller (the
// segment was made by an Open with a smaller bound, and recovery judges
// its tail by its header). While a reservation larger than the bound
// waits, later ones wait behind it, so that a stream of small appends
// cannot keep something in flight for ever and starve it.
func (l *Log) reserve(total int, one []byte, many [][]byte) (seg *segment, off int, first uint64, rs uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	waiting := false // this is a large reservation, counted in l.largeWaiting
	defer func() {
		if waiting {
			l.largeWaiting--
		}
	}()
	for {
		l.fastOff() // the locked path takes over; commit turns it back on
		if l.closed {
			return nil, 0, 0, 0, ErrClosed
		}
		if l.failed != nil {
			return nil, 0, 0, 0, l.failed
		}
		if l.quiet > 0 {
			l.cond.Wait() // Close or a truncation is waiting for appends to drain
			continue
		}
		seg = l.segs[len(l.segs)-1]
		if l.tail+total <= seg.size() {
			bound := min(int(l.opts.InFlightBound), seg.bound())
			large := total > bound
			if (l.largeWaiting == 0 || large) && (l.tail+total-l.dOff <= bound || l.tail == l.dOff) {
				break
			}
			if large && !waiting {
				waiting = true
				l.largeWaiting++
			}
			l.cond.Wait()
			continue
		}
		if l.rhead != l.rseq || l.durable != l.written {
			// Every record of this segment must be durable before its
			// successor is activated.
			l.cond.Wait()
			continue
		}
		if err := l.rollover(); err != nil {
			return nil, 0, 0, 0, err
		}
	}
	if count := uint64(max(len(many), 1)); l.next > maxIndex || maxIndex-l.next < count-1 {
		return nil, 0, 0, 0, fmt.Errorf("%w: %d records from index %d", ErrIndexExhausted, count, l.next)
	}
	off = l.tail
	first = l.next
	if many == nil {
		seg.offs.Append(uint32(off))
		l.next++
	} else {
		p := off
		for _, r := range many {
			seg.offs.Append(uint32(p))
			p += recSize(len(r))
		}
		l.next += uint64(len(many))
	}
	l.tail += total
	l.stats.Records += l.next - first
	if many == nil {
		l.stats.Bytes += uint64(len(one))
	} else {
		for _, r := range many {
			l.stats.Bytes += uint64(len(r))
		}
	}
	if l.rseq-l.rhead == uint64(len(l.ring)) {
		l.growRing()
	}
	rs = l.rseq
	l.ring[rs&uint64(len(l.ring)-1)] = resv{last: l.next - 1, end: l.tail}
	l.rseq++
	l.inFlight++
	l.roundPeak = max(l.roundPeak, l.inFlight)
	return seg, off, first, rs, nil
}

func (l *Log) growRing() {
	n := max(64, 2*len(l.ring))
	ring := make([]resv, n)
	for s := l.rhead; s < l.rseq; s++ {
		ring[s&uint64(n-1)] = l.ring[s&uint64(len(l.ring)-1)]
	}
	l.ring = ring
}

// commit marks reservation rs as written and returns once index last is
// durable. With msync the appenders share one msync per round (group
// commit): whoever finds no sync running syncs everything written so far.
func (l *Log) commit(rs uint64, last uint64, flushed int, perr error) error {
	l.mu.Lock()
	err := l.commitLocked(rs, last, flushed, perr)
	l.inFlight--
	if l.inFlight == 0 {
		// The last append in flight: the fast path may reopen, and
		// quiesce and fastResume wait for this.
		l.fastOn()
		if l.quiet > 0 || l.resumeWaiting > 0 {
			l.cond.Broadcast()
		}
	}
	l.mu.Unlock()
	return err
}

// quiesce waits (l.mu held, and closeMu exclusively) until no append is
// between reserve and the return of its commit, and holds new
// reservations off until unquiesce: the caller may then unmap or rewrite
// the active segment. Appends in flight finish as they would have: they
// need neither lock the caller holds besides l.mu, which cond.Wait
// releases.
func (l *Log) quiesce() {
	l.quiet++
	l.fastOff()
	for l.inFlight > 0 {
		l.cond.Wait()
	}
}

// unquiesce lets reservations go on after quiesce (l.mu held).
func (l *Log) unquiesce() {
	l.quiet--
	if l.quiet == 0 {
		l.cond.Broadcast()
	}
}

func (l *Log) commitLocked(rs uint64, last uint64, flushed int, perr error) error {
	if perr != nil {
		l.fail(perr)
	}
	l.flushedLines += uint64(flushed)
	l.stats.Appends++
	l.stats.FlushedLines += uint64(flushed)
	if !msyncMode(l) {
		l.stats.Fences++
	}
	l.ring[rs&uint64(len(l.ring)-1)].done = true
	advanced := false
	for l.rhead < l.rseq {
		r := &l.ring[l.rhead&uint64(len(l.ring)-1)]
		if !r.done {
			break
		}
		l.written, l.wOff = r.last, r.end
		l.rhead++
		advanced = true
	}
	msync := l.persist == PersistMsync
	if advanced {
		if !msync && l.failed == nil {
			l.setDurable(l.written, l.wOff)
		}
		l.cond.Broadcast()
	}
	var waitFrom time.Time // when this appender, able to lead a sync, began gathering
	for {
		if l.failed != nil {
			return l.failed
		}
		if l.durable >= last {
			return nil
		}
		if msync && !l.syncing && l.written >= last {
			if l.gatherMore(&waitFrom) {
				continue
			}
			l.syncing = true
			seg, from, to, upto := l.segs[len(l.segs)-1], l.dOff, l.wOff, l.written
			l.lastPeak, l.roundPeak = l.roundPeak, l.inFlight
			l.syncedSeq = l.rhead
			hook := l.syncHook
			l.mu.Unlock()
			t0 := time.Now()
			var err error
			if hook != nil {
				err = hook()
			}
			if err == nil {
				err = seg.msync(from, to-from)
			}
			took := time.Since(t0)
			l.mu.Lock()
			l.lastSync = took
			l.stats.Syncs++
			l.syncing = false
			if err != nil {
				l.fail(err)
			} else {
				l.setDurable(upto, to)
			}
			l.cond.Broadcast()
			continue
		}
		l.cond.Wait()
	}
}

// gatherMore reports whether an appender able to lead a group-commit sync
// (l.mu held, no sync running, its record written) should first wait for
// more records, and if so waits once (woken by a commit, or by a timer).
//
// A sync costs hundreds of microseconds; the records it covers are those
// written when it starts. Left alone, N appenders in a loop split into two
// groups that take turns: one syncs while the other writes, and each sync
// covers N/2. So the leader waits, for at most half the last sync's
// duration, until every reservation made is written and as many records
// are waiting as appenders were in flight during the previous round (the
// appenders the last sync released come back with their next records).
// A lone appender saw one appender in flight, itself, so it never waits.
func (l *Log) gatherMore(from *time.Time) bool {
	pending := int(l.rhead - l.syncedSeq)
	if l.rhead == l.rseq && pending >= l.lastPeak {
		return false
	}
	limit := min(l.lastSync/2, maxGatherWait)
	if l.gatherCap != 0 {
		limit = l.gatherCap
	}
	now := time.Now()
	if from.IsZero() {
		*from = now
	}
	left := limit - now.Sub(*from)
	if left <= 0 {
		return false
	}
	if l.gatherTimer == nil {
		l.gatherTimer = time.AfterFunc(left, func() {
			l.mu.Lock()
			l.cond.Broadcast()
			l.mu.Unlock()
		})
	} else {
		l.gatherTimer.Reset(left)
	}
	l.gatherWaits++
	l.cond.Wait()
	return true
}

// maxGatherWait bounds how long a group-commit leader waits for more
// records, whatever the last sync took.
const maxGatherWait = 500 * time.Microsecond

// setDurable publishes that every index up to last is durable (l.mu held).
func (l *Log) setDurable(last uint64, off int) {
	if last > l.durable {
		l.wakeTailers()
	}
	l.durable, l.dOff = last, off
}

func msyncMode(l *Log) bool { return l.persist == PersistMsync }

// fail poisons the log after a persistence error (l.mu held): no later
// append may succeed, since what reached the media is unknown.
func (l *Log) fail(err error) {
	l.fast.failed.Store(true)
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: %w", ErrFailed, err)
		l.log(slog.LevelError, "wal: persistence failed; refusing appends until reopened", "dir", l.dir, "err", err)
	}
	l.cond.Broadcast()
	l.wakeTailers() // they return the failure instead of waiting for records that cannot come
}

// log passes a message to Options.Logger, if any. It runs with the log's
// locks held and in background goroutines, so a handler that panics must
// not unwind through the log: the panic is recovered and dropped, and the
// message with it.
func (l *Log) log(level slog.Level, msg string, args ...any) {
	if l.logger == nil {
		return
	}
	defer func() { _ = recover() }()
	l.logger.Log(context.Background(), level, msg, args...)
}

// wakeTailers wakes every Tailer waiting in Next (l.mu held): the durable
// point advanced, or the log failed or closed.
func (l *Log) wakeTailers() {
	if l.grew != nil {
		close(l.grew)
		l.grew = nil
		l.fast.watch.Store(0)
		l.fast.fenced = false
	}
}

// rollover moves appends into the prepared next segment (l.mu held, no
// reservation in flight, so every record of the active segment is durable).
func (l *Log) rollover() error {
	sp := l.spare
	if sp == nil {
		if l.prepCh == nil {
			l.startPrepare()
		}
		res := <-l.prepCh
		l.prepCh = nil
		if res.err != nil {
			// One more try in the foreground before giving up on this append.
			res.seg, res.err = l.prepareSegment(l.nextSeq)
			if res.err != nil {
				return res.err
			}
		}
		sp = res.seg
	}
	if err := sp.activate(l.next); err != nil {
		l.spare = sp
		l.fail(err)
		return l.failed
	}
	l.spare = nil
	l.segs = append(l.segs, sp)
	l.nextSeq = sp.seq + 1
	l.tail, l.wOff, l.dOff = segHeaderSize, segHeaderSize, segHeaderSize
	l.startPrepare()
	return nil
}

// startPrepare creates the next segment file in the background (l.mu held
// or the log not yet shared).
func (l *Log) startPrepare() {
	if l.spare != nil || l.prepCh != nil {
		return // the next segment is ready or on its way
	}
	ch := make(chan prepResult, 1)
	l.prepCh = ch
	seq := l.nextSeq
	if d, ok := l.media.(interface{ Deterministic() bool }); ok && d.Deterministic() {
		s, err := l.prepareSegment(seq)
		ch <- prepResult{s, err}
		return
	}
	go func() {
		s, err := l.prepareSegment(seq)
		ch <- prepResult{s, err}
	}()
}

func (l *Log) prepareSegment(seq uint64) (*segment, error) {
	path := l.segPath(seq)
	s, err := openSegment(l.media, path, seq, l.persist)
	fresh := true
	if errors.Is(err, fs.ErrNotExist) {
		var salt uint64
		for salt == 0 {
			salt = rand.Uint64()
		}
		var hdr [segHeaderSize]byte
		encodeSegHeader(hdr[:], segHeader{version: formatVersion, size: uint64(l.opts.SegmentSize), seq: seq, salt: salt, bound: uint64(l.opts.InFlightBound)})
		reused := false
		if tmp := l.takeFree(path); tmp != "" {
			if rerr := l.reuseSegment(tmp, path, hdr[:]); rerr == nil {
				reused = true
			} else {
				l.log(slog.LevelWarn, "wal: could not reuse a free segment file; creating one", "file", tmp, "err", rerr)
			}
		}
		if !reused {
			if err := l.media.CreateSegment(path, l.opts.SegmentSize, hdr[:], l.opts.FileMode); err != nil {
				return nil, err
			}
		}
		s, err = openSegment(l.media, path, seq, l.persist)
		if err == nil && reused {
			l.poolMu.Lock()
			l.recycled++
			l.poolMu.Unlock()
		}
		fresh = !reused
	}
	if err != nil {
		return nil, err
	}
	if pf, ok := s.m.(interface{ prefault(from int, fresh bool) }); ok && s.first == 0 {
		pf.prefault(segHeaderSize, fresh)
	}
	return s, nil
}

func (l *Log) segPath(seq uint64) string { return filepath.Join(l.dir, segName(seq)) }

// Read returns a copy of the record at index. Outside [FirstIndex,
// LastIndex] it returns ErrNotFound; a record whose bytes no longer match
// their checksum gives ErrCorrupt.
func (l *Log) Read(index uint64) ([]byte, error) {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	var out []byte
	err := guardFault("read", func() error {
		rec, _, err := l.borrow(index)
		if err == nil {
			out = append([]byte(nil), rec...)
		}
		return err
	})
	return out, err
}

// borrow returns the verified payload of record index as a slice of the
// mapping, and its segment; the slice is valid while the caller holds
// l.closeMu shared, or has pinned the segment.
func (l *Log) borrow(index uint64) ([]byte, *segment, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if index > l.durable {
		l.catchUp()
	}
	if index < l.first || index > l.durable {
		first, last := l.first, l.durable
		l.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: index %d outside [%d, %d]", ErrNotFound, index, first, last)
	}
	seg := l.segFor(index)
	if seg == nil || index-seg.first >= uint64(seg.offs.Len()) {
		// Only a truncation that failed part way leaves the published
		// range ahead of the segments; the log has failed then.
		l.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: record %d is in no segment of the log", ErrCorrupt, index)
	}
	off := int(seg.offs.At(int(index - seg.first)))
	l.mu.Unlock()

	h := readRecHeader(seg.mem[off:])
	end := off + recHeaderSize + int(h.length)
	if h.index != index || end > seg.size() {
		return nil, nil, fmt.Errorf("%w: %s offset %d: record header does not match index %d", ErrCorrupt, seg.path, off, index)
	}
	if !recordSumOK(seg, off, h) {
		return nil, nil, fmt.Errorf("%w: %s offset %d: checksum mismatch in record %d", ErrCorrupt, seg.path, off, index)
	}
	return seg.mem[off+recHeaderSize : end : end], seg, nil
}

// segFor returns the segment that would hold index (l.mu held, index in
// range), or nil when index is below every segment.
func (l *Log) segFor(index uint64) *segment {
	n := len(l.segs)
	if s := l.segs[n-1]; index >= s.first {
		return s
	}
	i := sort.Search(n, func(i int) bool { return l.segs[i].first > index })
	if i == 0 {
		return nil
	}
	return l.segs[i-1]
}

// Close waits for operations in progress, then unmaps and closes every file
// and releases the directory lock. Later calls return ErrClosed, except
// FirstIndex, LastIndex, Persist, Hardware, Recovery and Stats, which keep
// reporting the log as it was when it closed. Every
// append that returned is durable whatever Close returns; its error reports
// a file that failed to close, or the failure of the background preparation
// of the next segment file (which holds no record, and which the next Open
// removes or redoes), so that a failing disk is not hidden.
func (l *Log) Close() error {
	// A TruncateFront retires the segments it emptied after letting
	// appends go on, holding only truncMu: wait for it.
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.cond.Broadcast()
	l.wakeTailers()
	l.quiesce() // appends in flight finish and are durable; the log stays quiet
	ch := l.prepCh
	l.prepCh = nil
	l.mu.Unlock()
	var err error
	if ch != nil {
		if res := <-ch; res.err == nil {
			l.spare = res.seg
		} else {
			err = res.err
		}
	}
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) closeFiles() error {
	var err error
	keep := func(e error) {
		if err == nil && e != nil {
			err = e
		}
	}
	for _, s := range l.segs {
		keep(s.close())
	}
	if l.spare != nil {
		keep(l.spare.close())
	}
	l.segs, l.spare = nil, nil
	if l.lockFile != nil {
		keep(l.lockFile.Close())
		l.lockFile = nil
	}
	return err
}
