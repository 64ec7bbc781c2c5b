// Package fuzz is a persistence simulator for crash-testing the pmwal log,
// and whatever an embedder builds on it, under power failure.
//
// A Sim is a wal.Media: pass it in wal.Options.Media and the real append
// and recovery code runs on simulated persistent memory. The Sim sees every
// flush, non-temporal store, fence and msync the log makes, and every file
// created, replaced and removed. At any chosen event it can produce the
// image that real persistent memory could hold after a power failure at
// that instant:
//
//   - every 8-byte word that was flushed (or stored non-temporally) and then
//     fenced, or msynced, has its new value;
//   - every other word that changed since it was last made durable is,
//     independently, its old value, its new value, or the value it had when
//     it was last flushed. x86 guarantees power-fail atomicity only for
//     aligned 8-byte stores, and the cache may write any line back at any
//     time, also before a flush;
//   - files created or replaced are there whole once the call returned;
//     removals not yet followed by a directory sync may be undone.
//
// Every choice comes from a math/rand/v2 PCG seeded by the caller, so a
// failure replays exactly from its seed.
//
// A crash test runs a workload on a Sim, calls CrashAt to choose the
// event, and after the workload (or at once with Crash) takes Image: a new
// Sim holding the post-crash storage, on which wal.Open recovers. Check
// then that what was acknowledged before the crash is there (see Oracle).
package fuzz

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/pmwal/wal"
)

const (
	word = 8
	line = 64
	page = 4096
)

// Sim is simulated persistent storage: a wal.Media whose files live in
// memory with a volatile and a durable image each.
type Sim struct {
	mu      sync.Mutex
	rng     *rand.Rand
	files   map[string]*file // the directory as the program sees it
	durable map[string]*file // the directory entries that survive a crash
	dirs    map[string]bool
	locks   map[string]bool
	events  int
	crashAt int  // take the image at this event; 0: never
	image   *Sim // taken at crashAt
	// A crash at a segment creation (which comes from the log's background
	// preparation, while appends store) is taken at the next other event
	// instead, so that it never reads memory another goroutine is storing
	// into; files created from the crash on are left out of it.
	pending bool
	after   map[string]bool
	faults  Faults
	choices []byte // NewFromBytes: the random choices, one byte each
}

// Faults deliberately break persistence, to show that a crash test has
// teeth: with any of them set, the log's guarantees no longer hold, and a
// good test must notice.
type Faults struct {
	// SkipFence makes Fence do nothing: flushed lines stay volatile.
	SkipFence bool
	// DropLastLine makes Flush and StoreNT leave the last cache line of
	// every range unflushed.
	DropLastLine bool
	// SkipSync makes Sync (msync) do nothing.
	SkipSync bool
}

type file struct {
	vol     []byte         // what the program reads and writes
	dur     []byte         // what survives a power failure
	flushed map[int][]byte // line offset -> contents when flushed, durable at the next fence
	mapped  bool
}

// New returns an empty Sim whose random choices come from PCG(seed1, seed2).
func New(seed1, seed2 uint64) *Sim {
	return &Sim{
		rng:     rand.New(rand.NewPCG(seed1, seed2)),
		files:   map[string]*file{},
		durable: map[string]*file{},
		dirs:    map[string]bool{},
		locks:   map[string]bool{},
	}
}

// NewFromBytes returns an empty Sim whose random choices (which words of
// a line survive a crash, which directory changes) are taken from data,
// one byte each, and are zero once data runs out: a fuzzer then steers the
// crash image directly.
func NewFromBytes(data []byte) *Sim {
	s := New(0, 0)
	s.choices = data
	if s.choices == nil {
		s.choices = []byte{}
	}
	return s
}

// choose returns a choice in [0, n) (s.mu held).
func (s *Sim) choose(n int) int {
	if s.choices == nil {
		return s.rng.IntN(n)
	}
	if len(s.choices) == 0 {
		return 0
	}
	c := int(s.choices[0]) % n
	s.choices = s.choices[1:]
	return c
}

// Deterministic asks the log to prepare segments inline rather than in the
// background, so that the order of events, and so every crash, replays
// exactly from the seed.
func (s *Sim) Deterministic() bool { return true }

// SetFaults breaks persistence as f says (tests of the harness itself).
func (s *Sim) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// Events returns how many persistence events (flushes, non-temporal
// stores, fences, syncs, file creations, replacements, removals and
// directory syncs) have happened so far.
func (s *Sim) Events() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

// CrashAt arms a power failure: the image is taken just before event n
// (counting from 1 since New), whatever goroutine causes it. Events after it
// still run, so the program goes on, but they no longer reach the image.
func (s *Sim) CrashAt(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crashAt = n
}

// Crashed reports whether the armed crash has happened. A call that
// returned before Crashed first reports true completed before the crash.
func (s *Sim) Crashed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.image != nil
}

// Crash takes a power failure now, unless the armed one already happened.
func (s *Sim) Crash() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.image == nil {
		if !s.pending {
			s.after = map[string]bool{}
		}
		s.image = s.snapshot()
	}
}

// Image returns the storage after the power failure: a fresh Sim (no
// locks, nothing mapped, every file's volatile and durable images equal)
// whose random choices come from the same generator. It is nil before the
// crash. Call it once the program stopped storing (after Close).
func (s *Sim) Image() *Sim {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.image == nil && s.pending {
		s.image = s.snapshot()
	}
	return s.image
}

// event counts one persistence event and takes the image when it is the
// armed one (s.mu held). created names the file a segment creation makes.
func (s *Sim) event(created string) {
	s.events++
	if s.image != nil {
		return
	}
	if s.crashAt > 0 && s.events >= s.crashAt && !s.pending {
		s.pending = true
		s.after = map[string]bool{}
	}
	if !s.pending {
		return
	}
	if created != "" {
		s.after[created] = true
		return
	}
	s.image = s.snapshot()
}

// snapshot builds the post-crash storage (s.mu held).
func (s *Sim) snapshot() *Sim {
	n := &Sim{
		rng:     rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64())),
		files:   map[string]*file{},
		durable: map[string]*file{},
		dirs:    map[string]bool{},
		locks:   map[string]bool{},
	}
	for d := range s.dirs {
		n.dirs[d] = true
	}
	// Directory entries: the durable ones survive; an entry removed or
	// added without a directory sync since is a coin toss. Names are
	// visited in order: map order must not steer the generator.
	names := map[string]*file{}
	for _, name := range sortedNames(s.durable) {
		if !s.after[name] {
			names[name] = s.durable[name]
		}
	}
	for _, name := range sortedNames(s.files) {
		if _, ok := names[name]; !ok && !s.after[name] && s.choose(2) == 0 {
			names[name] = s.files[name]
		}
	}
	for _, name := range sortedNames(s.durable) {
		if _, ok := s.files[name]; !ok && !s.after[name] && s.choose(2) == 0 {
			delete(names, name)
		}
	}
	for _, name := range sortedNames(names) {
		img := s.crashFile(names[name])
		nf := &file{vol: img, dur: append([]byte(nil), img...)}
		n.files[name], n.durable[name] = nf, nf
	}
	return n
}

func sortedNames(m map[string]*file) []string {
	out := make([]string, 0, len(m))
	for name := range m {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// crashFile draws one file's post-crash contents.
func (s *Sim) crashFile(f *file) []byte {
	img := append([]byte(nil), f.dur...)
	if len(f.vol) != len(f.dur) {
		return img
	}
	for off := 0; off+word <= len(img); off += word {
		if off%page == 0 && off+page <= len(img) && string(f.vol[off:off+page]) == string(f.dur[off:off+page]) {
			if _, fl := f.flushed[off]; !fl && !f.anyFlushedIn(off, off+page) {
				off += page - word
				continue
			}
		}
		v, d := f.vol[off:off+word], f.dur[off:off+word]
		fl, hasFl := f.flushed[off&^(line-1)]
		if string(v) == string(d) && !hasFl {
			continue
		}
		switch s.choose(3) {
		case 0: // old
		case 1:
			copy(img[off:], v)
		case 2:
			if hasFl {
				copy(img[off:], fl[off&(line-1):off&(line-1)+word])
			} else {
				copy(img[off:], v)
			}
		}
	}
	return img
}

// anyFlushedIn reports whether a line in [from, to) is flushed and not yet
// fenced.
func (f *file) anyFlushedIn(from, to int) bool {
	if len(f.flushed) == 0 {
		return false
	}
	for l := from; l < to; l += line {
		if _, ok := f.flushed[l]; ok {
			return true
		}
	}
	return false
}

// MkdirAll implements wal.Media.
func (s *Sim) MkdirAll(dir string, perm fs.FileMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := path.Clean(dir); d != "/" && d != "."; d = path.Dir(d) {
		s.dirs[d] = true
	}
	return nil
}

type unlocker struct {
	s   *Sim
	dir string
}

func (u unlocker) Close() error {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	delete(u.s.locks, u.dir)
	return nil
}

// Lock implements wal.Media.
func (s *Sim) Lock(dir string, perm fs.FileMode) (io.Closer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir = path.Clean(dir)
	if s.locks[dir] {
		return nil, fmt.Errorf("%w: %s (simulated)", wal.ErrLocked, dir)
	}
	s.locks[dir] = true
	return unlocker{s, dir}, nil
}

type dirEntry struct{ name string }

func (e dirEntry) Name() string               { return e.name }
func (e dirEntry) IsDir() bool                { return false }
func (e dirEntry) Type() fs.FileMode          { return 0 }
func (e dirEntry) Info() (fs.FileInfo, error) { return nil, errors.New("fuzz: no FileInfo") }

// ReadDir implements wal.Media.
func (s *Sim) ReadDir(dir string) ([]fs.DirEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir = path.Clean(dir)
	if !s.dirs[dir] {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var out []fs.DirEntry
	for name := range s.files {
		if path.Dir(name) == dir {
			out = append(out, dirEntry{path.Base(name)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// CreateSegment implements wal.Media: the file appears whole and durable
// when it returns; a crash at its event leaves nothing.
func (s *Sim) CreateSegment(name string, size int64, header []byte, perm fs.FileMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = path.Clean(name)
	s.event(name)
	f := &file{vol: make([]byte, size), dur: make([]byte, size)}
	copy(f.vol, header)
	copy(f.dur, header)
	s.files[name], s.durable[name] = f, f
	return nil
}

// ReadFile implements wal.Media.
func (s *Sim) ReadFile(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[path.Clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return append([]byte(nil), f.vol...), nil
}

// ReplaceFile implements wal.Media: atomic and durable on return.
func (s *Sim) ReplaceFile(name string, data []byte, perm fs.FileMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = path.Clean(name)
	s.event("")
	f := &file{vol: append([]byte(nil), data...), dur: append([]byte(nil), data...)}
	s.files[name], s.durable[name] = f, f
	return nil
}

// Remove implements wal.Media: durable after the next SyncDir.
func (s *Sim) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.event("")
	name = path.Clean(name)
	if _, ok := s.files[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(s.files, name)
	return nil
}

// Rename implements wal.Media: atomic and durable on return.
func (s *Sim) Rename(oldname, newname string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.event("")
	oldname, newname = path.Clean(oldname), path.Clean(newname)
	f, ok := s.files[oldname]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	if f.mapped {
		return fmt.Errorf("fuzz: rename %s: the file is mapped", oldname)
	}
	delete(s.files, oldname)
	s.files[newname] = f
	// The old name's entry goes and the new one comes, durably, together.
	delete(s.durable, oldname)
	s.durable[newname] = f
	return nil
}

// SyncDir implements wal.Media.
func (s *Sim) SyncDir(dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.event("")
	dir = path.Clean(dir)
	for name := range s.durable {
		if path.Dir(name) == dir {
			if _, ok := s.files[name]; !ok {
				delete(s.durable, name)
			}
		}
	}
	for name, f := range s.files {
		if path.Dir(name) == dir {
			s.durable[name] = f
		}
	}
	return nil
}

// Open implements wal.Media.
func (s *Sim) Open(name string) (wal.MediaFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[path.Clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &simFile{s: s, f: f, name: name}, nil
}

// Truncate changes a file's length in both images, as damage from outside
// would (tests of recovery).
func (s *Sim) Truncate(name string, size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[path.Clean(name)]
	if !ok {
		return &fs.PathError{Op: "truncate", Path: name, Err: fs.ErrNotExist}
	}
	resize := func(b []byte) []byte {
		if int64(len(b)) >= size {
			return b[:size:size]
		}
		return append(b, make([]byte, size-int64(len(b)))...)
	}
	f.vol, f.dur = resize(f.vol), resize(f.dur)
	return nil
}

// Files lists the files of the simulated storage, sorted.
func (s *Sim) Files() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range s.files {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Bytes returns a file's current contents for inspection or damage: writes
// into the slice change both what the program sees and what survives.
// Only for files that are not mapped.
func (s *Sim) Bytes(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[path.Clean(name)]
	if !ok || f.mapped {
		return nil
	}
	return f.vol
}

type simFile struct {
	s    *Sim
	f    *file
	name string
}

func (f *simFile) Size() int64 {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return int64(len(f.f.vol))
}

func (f *simFile) ReadAt(p []byte, off int64) (int, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if off >= int64(len(f.f.vol)) {
		return 0, io.EOF
	}
	n := copy(p, f.f.vol[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *simFile) Close() error { return nil }

// Map implements wal.MediaFile. PersistMsync gives a page-cache mapping
// made durable by Sync; every other mode behaves as persistent memory
// (PersistDAX for PersistAuto and PersistDAX).
func (f *simFile) Map(want wal.Persist) (wal.Mapping, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if len(f.f.vol) == 0 {
		return nil, fmt.Errorf("fuzz: map %s: empty file", f.name)
	}
	if len(f.f.dur) != len(f.f.vol) {
		f.f.dur = append([]byte(nil), f.f.vol...)
	}
	if string(f.f.dur) != string(f.f.vol) {
		// A file damaged through Bytes: what is there now is durable.
		copy(f.f.dur, f.f.vol)
	}
	f.f.mapped = true
	mode := want
	if mode == wal.PersistAuto {
		mode = wal.PersistDAX
	}
	return &mapping{s: f.s, f: f.f, mode: mode}, nil
}

type mapping struct {
	s    *Sim
	f    *file
	mode wal.Persist
}

func (m *mapping) Bytes() []byte        { return m.f.vol }
func (m *mapping) Persist() wal.Persist { return m.mode }

// flushLines records the current contents of the lines covering
// [off, off+n) as flushed: durable at the next fence (m.s.mu held).
func (m *mapping) flushLines(off, n int) int {
	if n <= 0 {
		return 0
	}
	start, end := off&^(line-1), (off+n+line-1)&^(line-1)
	if m.s.faults.DropLastLine {
		end -= line
	}
	if m.f.flushed == nil {
		m.f.flushed = map[int][]byte{}
	}
	k := 0
	for l := start; l < end; l += line {
		m.f.flushed[l] = append(m.f.flushed[l][:0], m.f.vol[l:l+line]...)
		k++
	}
	return k
}

func (m *mapping) Flush(off, n int) int {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.s.event("")
	return m.flushLines(off, n)
}

func (m *mapping) StoreNT(off int, src []byte) int {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.s.event("")
	copy(m.f.vol[off:], src)
	m.flushLines(off, len(src))
	return 0
}

// Fence makes every flushed line of the file durable. (Real SFENCE orders
// only its own core's flushes; persisting other goroutines' flushed lines
// early is one of the outcomes real hardware allows.)
func (m *mapping) Fence() error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.s.event("")
	if m.s.faults.SkipFence {
		return nil
	}
	for l, b := range m.f.flushed {
		copy(m.f.dur[l:], b)
	}
	clear(m.f.flushed)
	return nil
}

func (m *mapping) Sync(off, n int) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.s.event("")
	if m.s.faults.SkipSync || n <= 0 {
		return nil
	}
	start, end := off&^(page-1), min((off+n+page-1)&^(page-1), len(m.f.vol))
	copy(m.f.dur[start:end], m.f.vol[start:end])
	return nil
}

func (m *mapping) Unmap() error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.f.mapped = false
	return nil
}

// String describes the Sim for failure messages.
func (s *Sim) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "sim: %d events, crash at %d, %d files", s.events, s.crashAt, len(s.files))
	return b.String()
}

var _ wal.Media = (*Sim)(nil)
