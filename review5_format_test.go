package wal_test

// An independent reader of the on-media format, written from FORMAT.md alone
// (no use of format.go / recovery.go), checked against the library: after
// random appends, batches, truncations and rollovers, a closed log directory
// must decode to exactly the records the library's Read / FirstIndex /
// LastIndex give after reopening; after damage, the decoder and the
// library's recovery must keep the same records or both refuse the log.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/pmwal/wal"
)

var le = binary.LittleEndian

// r5Scale divides the iteration counts of the tests below: 1 normally, more
// under -short and under the race detector (found in the build settings:
// this file may not add a build-tagged constant), where the same work runs
// several times slower.
var r5Scale = sync.OnceValue(func() int {
	n := 1
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				n *= 4
			}
		}
	}
	if testing.Short() {
		n *= 3
	}
	return n
})

// r5Scaled is n divided by r5Scale, at least lo.
func r5Scaled(n, lo int) int { return max(n/r5Scale(), lo) }

// r5Log is what the decoder considers the log: first index and the records
// (index first+i is recs[i]).
type r5Log struct {
	first uint64
	recs  [][]byte
	// strict lists conformance findings that do not change the record list
	// and that neither a writer nor recovery leaves behind (non-zero
	// reserved bytes or padding, complete-looking records or non-zero bytes
	// within the in-flight bound past the tail, a file that never held a
	// record, more than one spare...).
	strict []string
	// untouched lists bytes a writer never leaves but that recovery, as
	// FORMAT.md says, neither reads nor clears: what follows the last record
	// of a sealed segment, and non-zero bytes past the tail, beyond the
	// in-flight bound, that are not complete-looking records.
	untouched []string
	salts     map[uint64]uint64 // seq -> salt of the segment files with a valid header
	// sealed: for every sealed segment, by salt, what follows its last
	// record (FORMAT.md: "left as it is").
	sealed map[uint64]r5Rest
}

type r5Rest struct {
	seq, off uint64
	sum      uint64 // xxhash64 of the bytes from off to the end
}

type r5Seg struct {
	seq       uint64
	data      []byte
	size      uint64
	salt      uint64
	bound     uint64
	activated bool
	first     uint64
	neverHeld bool // header not valid, and the file certainly never held a record
}

var r5SegName = regexp.MustCompile(`^([0-9]{20})\.seg$`)

func r5roundup8(n uint64) uint64 { return (n + 7) &^ 7 }

// r5RecSum is FORMAT.md "Records": xxhash64(h ‖ p) XOR salt, h = header bytes
// 8..31, p = xxhash64(payload) as 8 little-endian bytes, seed 0.
func r5RecSum(hdr []byte, payload []byte, salt uint64) uint64 {
	var buf [32]byte
	copy(buf[:24], hdr[8:32])
	le.PutUint64(buf[24:], xxhash.Sum64(payload))
	return xxhash.Sum64(buf[:]) ^ salt
}

// r5ActCheck is the activation block's check word: xxhash64(salt ‖ first) | 1.
func r5ActCheck(salt, first uint64) uint64 {
	var sb [16]byte
	le.PutUint64(sb[0:], salt)
	le.PutUint64(sb[8:], first)
	return xxhash.Sum64(sb[:]) | 1
}

// r5Activation reads the activation block of d (at least 128 bytes) under
// salt: the first index, when the block verifies.
func r5Activation(d []byte, salt uint64) (first uint64, ok bool) {
	first = le.Uint64(d[64:])
	return first, first >= 1 && le.Uint64(d[72:]) == r5ActCheck(salt, first)
}

// r5Header checks a segment file's header against FORMAT.md "Header": why
// is "" when it is valid. decodes reports that every condition but "size
// equals the file's size" holds (the header "decodes", as one a creation
// cut short leaves).
func r5Header(d []byte, seq uint64) (decodes bool, why string) {
	switch {
	case len(d) < 128:
		return false, fmt.Sprintf("file of %d bytes", len(d))
	case string(d[0:8]) != "PMWALSEG":
		return false, "bad magic"
	case le.Uint32(d[8:]) != 1:
		return false, fmt.Sprintf("version %d", le.Uint32(d[8:]))
	case xxhash.Sum64(d[:56]) != le.Uint64(d[56:]):
		return false, "bad header checksum"
	}
	size := le.Uint64(d[16:])
	switch {
	case size < 1<<20 || size > 1<<32-4096 || size%4096 != 0:
		return false, fmt.Sprintf("size %d out of range", size)
	case le.Uint64(d[24:]) != seq:
		return false, fmt.Sprintf("header seq %d", le.Uint64(d[24:]))
	case le.Uint64(d[32:]) == 0:
		return false, "salt 0"
	case le.Uint64(d[40:]) < 32:
		return false, fmt.Sprintf("bound %d", le.Uint64(d[40:]))
	case le.Uint32(d[12:]) != 0 || le.Uint64(d[48:]) != 0:
		return false, "reserved field not 0"
	case size != uint64(len(d)):
		return true, fmt.Sprintf("header size %d, file %d", size, len(d))
	}
	return true, ""
}

type r5Rec struct {
	off       uint64
	index     uint64
	length    uint64
	batchLeft uint32
	batchPos  uint32
	flags     uint32
	end       uint64 // off + the bytes the record occupies (padding included)
}

// r5Parse reads the header at off and reports whether the record "fits",
// has flags 0, an index the format allows and a checksum that matches.
func r5Parse(s *r5Seg, off uint64) (r5Rec, bool) {
	var r r5Rec
	if off+32 > s.size {
		return r, false
	}
	h := s.data[off : off+32]
	r.off = off
	r.index = le.Uint64(h[8:])
	r.length = uint64(le.Uint32(h[16:]))
	r.batchLeft = le.Uint32(h[20:])
	r.batchPos = le.Uint32(h[24:])
	r.flags = le.Uint32(h[28:])
	r.end = off + 32 + r5roundup8(r.length)
	if r.flags != 0 || r.end > s.size || r.index == ^uint64(0) {
		return r, false
	}
	if r5RecSum(h, s.data[off+32:off+32+r.length], s.salt) != le.Uint64(h[0:]) {
		return r, false
	}
	return r, true
}

// r5WalkCut is the walk of the segment holding c while META carries the
// cut intent (FORMAT.md "Truncation"): the records of the batch holding c
// may each be old, new (batchLeft = c-index, checksum for it) or have only
// the new checksum; all three are accepted, with batchLeft read as c-index.
// The walk must reach c.
func r5WalkCut(s *r5Seg, c uint64) (recs []r5Rec, ok bool) {
	off := uint64(128)
	expect := s.first
	var inBatch bool
	var batchStart uint64
	var left uint32
	for expect <= c {
		r, good := r5Parse(s, off)
		if !good && r.flags == 0 && r.end <= s.size && r.end > off && r.index == expect {
			// only the new checksum?
			var h [32]byte
			copy(h[:], s.data[off:off+32])
			le.PutUint32(h[20:], uint32(c-r.index))
			if r5RecSum(h[:], s.data[off+32:off+32+r.length], s.salt) == le.Uint64(h[0:]) {
				good = true
				r.batchLeft = uint32(c - r.index)
			}
		}
		if !good || r.index != expect {
			return recs, false
		}
		if r.index+uint64(r.batchLeft) >= c {
			r.batchLeft = uint32(c - r.index)
		}
		if inBatch {
			if r.batchLeft != left-1 || uint64(r.batchPos) != off-batchStart {
				return recs, false
			}
		} else {
			if r.batchPos != 0 {
				return recs, false
			}
			batchStart = off
		}
		recs = append(recs, r)
		left = r.batchLeft
		inBatch = left != 0
		off = r.end
		expect++
	}
	return recs, !inBatch
}

// r5Walk walks an activated segment from byte 128, expecting first,
// first+1, ... and going no further than index last (FORMAT.md: a sealed
// segment's walk stops at first(N+1)-1 and reads nothing after it): the
// records that verify, in order, and the commit point (the end of the last
// record whose batchLeft is 0) with the number of records up to it.
func r5Walk(s *r5Seg, last uint64) (recs []r5Rec, commit uint64, ncommit int, stop uint64) {
	off := uint64(128)
	commit = off
	expect := s.first
	var inBatch bool
	var batchStart uint64
	var left uint32
	for expect <= last {
		r, ok := r5Parse(s, off)
		if !ok || r.index != expect {
			break
		}
		if inBatch {
			if r.batchLeft != left-1 || uint64(r.batchPos) != off-batchStart {
				break
			}
		} else {
			if r.batchPos != 0 {
				break
			}
			batchStart = off
		}
		recs = append(recs, r)
		left = r.batchLeft
		inBatch = left != 0
		off = r.end
		expect++
		if !inBatch {
			commit = off
			ncommit = len(recs)
		}
	}
	return recs, commit, ncommit, off
}

// r5TailScan is FORMAT.md "The in-flight bound and torn tails": from the
// commit point C of the last segment, whose last kept index is lastKept, it
// looks at every 8-byte offset for complete-looking records (index I with
// lastKept < I <= lastKept + size/32, flags 0, fits, checksum verifies),
// going on after one at its end rounded up to 8 bytes. It returns them,
// and the first one that ends (without padding) more than bound bytes past
// C and whose batch starts after C (o - batchPos > C), if any.
func r5TailScan(s *r5Seg, commit, lastKept uint64) (found []r5Rec, beyond *r5Rec) {
	for off := commit; off+32 <= s.size; {
		idx := le.Uint64(s.data[off+8:])
		if idx > lastKept && idx-lastKept <= s.size/32 {
			if r, ok := r5Parse(s, off); ok {
				found = append(found, r)
				if off+32+r.length-commit > s.bound && uint64(r.batchPos) < off-commit && beyond == nil {
					beyond = &r
				}
				off = r.end
				continue
			}
		}
		off += 8
	}
	return found, beyond
}

// r5Zero is a page of zeros to compare with.
var r5Zero = make([]byte, 64<<10)

func r5AllZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(r5Zero))
		if !bytes.Equal(b[:n], r5Zero[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// r5ReadFile reads a file into a buffer of its size, taken from r5Free when
// free is set (the caller gives it back with r5Release). os.ReadFile grows
// its buffer to see EOF, and fresh megabytes cost page faults and, under
// -race, shadow memory: reading every segment file several times per trial
// was most of these tests' time.
func r5ReadFile(path string, free bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var b []byte
	if free {
		select {
		case b = <-r5Free:
		default:
		}
	}
	if int64(cap(b)) < fi.Size() {
		b = make([]byte, fi.Size())
	}
	b = b[:fi.Size()]
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

var r5Free = make(chan []byte, 16)

func r5Release(b []byte) {
	select {
	case r5Free <- b:
	default:
	}
}

// r5Decode reads a closed log directory per FORMAT.md.
func r5Decode(dir string) (*r5Log, error) {
	out := &r5Log{salts: map[uint64]uint64{}, sealed: map[uint64]r5Rest{}}
	strictf := func(f string, a ...any) { out.strict = append(out.strict, fmt.Sprintf(f, a...)) }
	untouchedf := func(f string, a ...any) { out.untouched = append(out.untouched, fmt.Sprintf(f, a...)) }
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []*r5Seg
	for _, e := range ents {
		m := r5SegName.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		seq, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			return nil, err
		}
		if seq == 0 { // "00000000000000000000.seg is not a segment name"
			continue
		}
		data, err := r5ReadFile(filepath.Join(dir, e.Name()), true)
		if err != nil {
			return nil, err
		}
		defer r5Release(data) // out holds copies only
		segs = append(segs, &r5Seg{seq: seq, data: data})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].seq < segs[j].seq })

	// Segment headers and activation blocks.
	for i, s := range segs {
		if i > 0 && s.seq != segs[i-1].seq+1 {
			return nil, fmt.Errorf("gap in segment sequence: %d after %d", s.seq, segs[i-1].seq)
		}
		d := s.data
		if decodes, why := r5Header(d, s.seq); why != "" {
			// Removed if it certainly never held a record: empty or zero
			// in full, or a header that decodes with an activation block
			// that does not verify. Any other is corrupt.
			never := r5AllZero(d)
			if !never && decodes {
				_, act := r5Activation(d, le.Uint64(d[32:]))
				never = !act
			}
			if never {
				s.neverHeld = true
				strictf("seg %d: header not valid (%s), never held a record", s.seq, why)
				continue
			}
			return nil, fmt.Errorf("seg %d: header not valid: %s", s.seq, why)
		}
		s.size = uint64(len(d))
		s.salt = le.Uint64(d[32:])
		out.salts[s.seq] = s.salt
		s.bound = min(le.Uint64(d[40:]), s.size) // "a header bound beyond the segment counts as the segment's size"
		s.first, s.activated = r5Activation(d, s.salt)
		if s.activated && !r5AllZero(d[80:128]) {
			strictf("seg %d: bytes 80..127 not zero", s.seq)
		}
	}

	// Files that are not activated (or never held a record) may only follow
	// the activated ones: a writer activates segment N+1 only after N, so
	// one before an activated segment had its activation block damaged
	// (FORMAT.md, Activation block: ErrCorrupt).
	// A not-activated segment is zero from 128 for the in-flight bound.
	var act []*r5Seg
	for i, s := range segs {
		if !s.activated {
			if !s.neverHeld && !r5AllZero(s.data[128:min(128+s.bound, s.size)]) {
				return nil, fmt.Errorf("seg %d: not activated and not zero", s.seq)
			}
			continue
		}
		if i > 0 && !segs[i-1].activated {
			return nil, fmt.Errorf("seg %d: activated after a not-activated one", s.seq)
		}
		act = append(act, s)
	}
	if len(act) > 0 && len(act) < len(segs)-1 {
		strictf("%d not-activated segments (more than one spare)", len(segs)-len(act))
	}

	// META, and its validity: checksum, magic and version, no flag but bit
	// 0, first >= 1, with the cut flag cut+1 >= first. Without META, a
	// directory in which no segment file ever held a record is a new log
	// (no file that held data is left: the checks above refused any other).
	meta, err := os.ReadFile(filepath.Join(dir, "META"))
	if errors.Is(err, fs.ErrNotExist) && len(act) == 0 {
		out.first = 1
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("META: %w", err)
	}
	if len(meta) != 40 {
		return nil, fmt.Errorf("META: %d bytes, want 40", len(meta))
	}
	if string(meta[0:8]) != "PMWALMET" || le.Uint32(meta[8:]) != 1 {
		return nil, fmt.Errorf("META: bad magic/version")
	}
	if xxhash.Sum64(meta[:32]) != le.Uint64(meta[32:]) {
		return nil, fmt.Errorf("META: bad checksum")
	}
	flags := le.Uint32(meta[12:])
	if flags&^1 != 0 {
		return nil, fmt.Errorf("META: flags %#x", flags)
	}
	metaFirst := le.Uint64(meta[16:])
	if metaFirst < 1 {
		return nil, fmt.Errorf("META: first 0")
	}
	cutting := flags&1 != 0
	cut := le.Uint64(meta[24:])
	if cutting && cut+1 < metaFirst {
		return nil, fmt.Errorf("META: cut %d below first %d - 1", cut, metaFirst)
	}
	if !cutting && cut != 0 {
		strictf("META: cut %d without the flag", cut)
	}

	// An interrupted TruncateFront: a segment followed by one whose first is
	// <= META's first is removed.
	for len(act) > 1 && act[1].first <= metaFirst {
		act = act[1:]
	}
	if len(act) > 0 && act[0].first > metaFirst {
		return nil, fmt.Errorf("first segment starts at %d, after META first %d", act[0].first, metaFirst)
	}

	type kept struct {
		index   uint64
		payload []byte
	}
	var all []kept
	if cutting {
		// The redo of the cut comes before the tail is read: segments
		// whose first index is above c+1 go.
		for len(act) > 1 && act[len(act)-1].first > cut+1 {
			act = act[:len(act)-1]
		}
		if len(act) > 0 && act[len(act)-1].first > cut+1 {
			return nil, fmt.Errorf("cut %d below the only segment's first %d", cut, act[len(act)-1].first)
		}
	}
	for i, s := range act {
		last := i == len(act)-1
		if last && cutting {
			recs, ok := r5WalkCut(s, cut)
			if !ok {
				return nil, fmt.Errorf("seg %d: cut intent at %d, but the records up to it are not all there", s.seq, cut)
			}
			for _, r := range recs {
				all = append(all, kept{r.index, s.data[r.off+32 : r.off+32+r.length]})
			}
			continue
		}
		var recs []r5Rec
		var commit uint64
		if !last {
			// Sealed: the walk must reach first(N+1)-1 exactly, at a
			// commit point, and stops there.
			next := act[i+1].first
			if next < s.first {
				return nil, fmt.Errorf("seg %d: first %d below seg %d's %d", act[i+1].seq, next, s.seq, s.first)
			}
			var ncommit int
			var stop uint64
			recs, commit, ncommit, stop = r5Walk(s, next-1)
			if want := next - s.first; uint64(ncommit) != want || ncommit != len(recs) {
				return nil, fmt.Errorf("seg %d sealed: walk got %d records (%d committed, stop at %d), want %d",
					s.seq, len(recs), ncommit, stop, want)
			}
			out.sealed[s.salt] = r5Rest{s.seq, commit, xxhash.Sum64(s.data[commit:])}
			if !r5AllZero(s.data[commit:]) {
				untouchedf("seg %d (sealed): non-zero bytes after the last record (C=%d)", s.seq, commit)
			}
		} else {
			var ncommit int
			recs, commit, ncommit, _ = r5Walk(s, ^uint64(0))
			recs = recs[:ncommit]
			lastKept := s.first - 1
			if ncommit > 0 {
				lastKept = recs[ncommit-1].index
			}
			found, beyond := r5TailScan(s, commit, lastKept)
			if beyond != nil {
				return nil, fmt.Errorf("seg %d: complete-looking record %d at %d (batchPos %d, length %d) ends beyond C=%d + bound %d: corrupt",
					s.seq, beyond.index, beyond.off, beyond.batchPos, beyond.length, commit, s.bound)
			}
			for _, r := range found {
				strictf("seg %d: complete-looking record %d at %d past C=%d", s.seq, r.index, r.off, commit)
			}
			if inBound := min(commit+s.bound, s.size); !r5AllZero(s.data[commit:inBound]) {
				strictf("seg %d: non-zero bytes within the bound after the last record (C=%d)", s.seq, commit)
			} else if !r5AllZero(s.data[inBound:]) {
				untouchedf("seg %d: non-zero bytes beyond the bound after the last record (C=%d)", s.seq, commit)
			}
		}
		for _, r := range recs {
			if !r5AllZero(s.data[r.off+32+r.length : r.end]) {
				strictf("seg %d: record %d padding not zero", s.seq, r.index)
			}
			all = append(all, kept{r.index, s.data[r.off+32 : r.off+32+r.length]})
		}
	}
	if cutting {
		for len(all) > 0 && all[len(all)-1].index > cut {
			all = all[:len(all)-1]
		}
	}
	out.first = metaFirst
	for _, k := range all {
		if k.index >= metaFirst {
			out.recs = append(out.recs, bytes.Clone(k.payload))
		}
	}
	if len(out.recs) > 0 {
		// indexes are consecutive by construction of the walk
		var firstKept uint64
		for _, k := range all {
			if k.index >= metaFirst {
				firstKept = k.index
				break
			}
		}
		if firstKept != metaFirst {
			return nil, fmt.Errorf("first kept record %d != META first %d", firstKept, metaFirst)
		}
	}
	return out, nil
}

// r5Model is what the test did.
type r5Model struct {
	first uint64
	recs  [][]byte
}

func (m *r5Model) last() uint64 { return m.first + uint64(len(m.recs)) - 1 }

func r5Payload(rng *rand.Rand, max int) []byte {
	var n int
	switch rng.IntN(10) {
	case 0:
		n = 0
	case 1, 2:
		n = rng.IntN(16)
	case 3:
		n = max
	default:
		n = rng.IntN(max + 1)
	}
	b := make([]byte, n+7)
	for i := 0; i < n; i += 8 {
		le.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n:n]
}

func r5CheckLib(t *testing.T, what string, l *wal.Log, m *r5Model) {
	t.Helper()
	if got := l.FirstIndex(); got != m.first {
		t.Fatalf("%s: library FirstIndex %d, model %d", what, got, m.first)
	}
	if got := l.LastIndex(); got != m.last() {
		t.Fatalf("%s: library LastIndex %d, model %d", what, got, m.last())
	}
	for i, want := range m.recs {
		got, err := l.Read(m.first + uint64(i))
		if err != nil {
			t.Fatalf("%s: library Read(%d): %v", what, m.first+uint64(i), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: library Read(%d): %d bytes, model %d bytes", what, m.first+uint64(i), len(got), len(want))
		}
	}
	if _, err := l.Read(m.last() + 1); !errors.Is(err, wal.ErrNotFound) {
		t.Fatalf("%s: Read past LastIndex: %v", what, err)
	}
}

func r5CheckDecoded(t *testing.T, what string, dir string, m *r5Model, salts map[uint64]uint64) { // salts: salt -> seq, over the log's history
	t.Helper()
	d, err := r5Decode(dir)
	if err != nil {
		t.Fatalf("%s: FORMAT.md decoder: %v", what, err)
	}
	for _, s := range d.strict {
		t.Errorf("%s: format conformance: %s", what, s)
	}
	for _, s := range d.untouched {
		t.Errorf("%s: format conformance (a writer never leaves this): %s", what, s)
	}
	// A salt is "random, never 0, new for every segment file": no salt may
	// show up again under another sequence number. (A sequence number can
	// come back with a new file and salt after TruncateBack removed it.)
	for seq, salt := range d.salts {
		if o, ok := salts[salt]; ok && o != seq {
			t.Errorf("%s: segments %d and %d share salt %#x", what, o, seq, salt)
		}
		salts[salt] = seq
	}
	if os.Getenv("R5DEBUG") != "" {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Logf("%s: first %d n %d files %v", what, d.first, len(d.recs), names)
	}
	if d.first != m.first || len(d.recs) != len(m.recs) {
		t.Fatalf("%s: decoder sees [%d, %d], model [%d, %d]", what,
			d.first, d.first+uint64(len(d.recs))-1, m.first, m.last())
	}
	for i := range d.recs {
		if !bytes.Equal(d.recs[i], m.recs[i]) {
			t.Fatalf("%s: decoder record %d: %d bytes, model %d bytes", what, m.first+uint64(i), len(d.recs[i]), len(m.recs[i]))
		}
	}
}

// r5Logs random logs (fewer under -short and -race, see r5Scale).
const r5Logs = 24

// TestReview5FormatRandom: random logs, decoded from FORMAT.md after every
// Close, compared with the model and with the library after reopening.
func TestReview5FormatRandom(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	rng := rand.New(rand.NewPCG(0x5eed, 0xf0a7))
	logs := r5Scaled(r5Logs, 4)
	for n := 0; n < logs; n++ {
		dir, err := os.MkdirTemp("/dev/shm", "r5fmt-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		opts := &wal.Options{Persist: wal.PersistCacheFlush, SegmentSize: 1 << 20}
		switch n % 4 {
		case 1:
			opts.RecycleSegments = 2
		case 2:
			opts.InFlightBound = 4096
		case 3:
			opts.InFlightBound = 64 << 10
			opts.RecycleSegments = 1
		}
		m := &r5Model{first: 1}
		salts := map[uint64]uint64{}
		lives := 2 + rng.IntN(3)
		for life := 0; life < lives; life++ {
			what := fmt.Sprintf("log %d life %d", n, life)
			l, err := wal.Open(dir, opts)
			if err != nil {
				t.Fatalf("%s: Open: %v", what, err)
			}
			r5CheckLib(t, what+" (reopened)", l, m)
			ops := 300 + rng.IntN(2000)
			// Some lives truncate rarely or never, so that closed logs hold
			// several sealed segments.
			scale := []int{100, 400, 4000}[rng.IntN(3)]
			for op := 0; op < ops; op++ {
				k := rng.IntN(scale)
				if k >= 100 {
					k = rng.IntN(88) // an append or a batch
				}
				switch {
				case k < 55:
					p := r5Payload(rng, 4096)
					idx, err := l.Append(p)
					if err != nil {
						t.Fatalf("%s op %d: Append: %v", what, op, err)
					}
					if idx != m.last()+1 {
						t.Fatalf("%s op %d: Append index %d, want %d", what, op, idx, m.last()+1)
					}
					m.recs = append(m.recs, p)
				case k < 88:
					nb := rng.IntN(24)
					batch := make([][]byte, nb)
					for i := range batch {
						batch[i] = r5Payload(rng, []int{64, 512, 4096}[rng.IntN(3)])
					}
					idx, err := l.AppendBatch(batch)
					if err != nil {
						t.Fatalf("%s op %d: AppendBatch(%d): %v", what, op, nb, err)
					}
					if idx != m.last()+1 {
						t.Fatalf("%s op %d: AppendBatch index %d, want %d", what, op, idx, m.last()+1)
					}
					m.recs = append(m.recs, batch...)
				case k < 89:
					// TruncateFront, mostly near the front, sometimes past the end.
					var i uint64
					if rng.IntN(10) == 0 {
						i = m.last() + 1 + uint64(rng.IntN(5))
					} else if len(m.recs) > 0 {
						i = m.first + uint64(rng.IntN(len(m.recs)/8+1))
					} else {
						i = m.first
					}
					if err := l.TruncateFront(i); err != nil {
						t.Fatalf("%s op %d: TruncateFront(%d): %v", what, op, i, err)
					}
					if i > m.first {
						if i > m.last() {
							m.recs = nil
						} else {
							m.recs = m.recs[i-m.first:]
						}
						m.first = i
					}
				default:
					// TruncateBack to c in [first-1, last], mostly near the end
					// (often inside the last batch).
					if len(m.recs) == 0 {
						continue
					}
					var c uint64
					if rng.IntN(10) == 0 {
						c = m.first - 1 + uint64(rng.IntN(len(m.recs)+1))
					} else {
						back := uint64(rng.IntN(min(len(m.recs), 30) + 1))
						c = m.last() - back
					}
					if err := l.TruncateBack(c); err != nil {
						t.Fatalf("%s op %d: TruncateBack(%d): %v", what, op, c, err)
					}
					if c < m.last() {
						m.recs = m.recs[:c+1-m.first]
					}
				}
			}
			r5CheckLib(t, what+" (before Close)", l, m)
			if err := l.Close(); err != nil {
				t.Fatalf("%s: Close: %v", what, err)
			}
			r5CheckDecoded(t, what+" (closed)", dir, m, salts)
		}
		// Last reopen: library against model (and so against the decoder,
		// which matched the model on the same closed directory).
		l, err := wal.Open(dir, opts)
		if err != nil {
			t.Fatalf("log %d final Open: %v", n, err)
		}
		r5CheckLib(t, fmt.Sprintf("log %d final reopen", n), l, m)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		r5CheckDecoded(t, fmt.Sprintf("log %d after final reopen", n), dir, m, salts)
	}
}

// ---------------------------------------------------------------------------
// Crash-like and damaged states. FORMAT.md specifies what a reader must make
// of them (torn tails, the in-flight bound, a cut intent in META, an
// interrupted TruncateFront, a not-activated segment, a gap); the decoder
// and the library must agree on the records kept, or both refuse the log
// (the library with ErrCorrupt).

// r5Layout is the decoder's view of one segment file, for mutations.
type r5Layout struct {
	path string
	seg  *r5Seg
	recs []r5Rec // records the walk verified
	c    uint64  // commit point
}

func r5ReadLayout(t *testing.T, dir string) []*r5Layout {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []*r5Layout
	for _, e := range ents {
		mm := r5SegName.FindStringSubmatch(e.Name())
		if mm == nil {
			continue
		}
		seq, _ := strconv.ParseUint(mm[1], 10, 64)
		p := filepath.Join(dir, e.Name())
		data, err := r5ReadFile(p, false)
		if err != nil {
			t.Fatal(err)
		}
		if seq == 0 || len(data) < 128 {
			t.Fatalf("%s: not a segment of a base log", p)
		}
		s := &r5Seg{seq: seq, data: data, size: uint64(len(data)), salt: le.Uint64(data[32:])}
		s.bound = min(le.Uint64(data[40:]), s.size)
		s.first, s.activated = r5Activation(data, s.salt)
		ly := &r5Layout{path: p, seg: s}
		if s.activated {
			ly.recs, ly.c, _, _ = r5Walk(s, ^uint64(0))
		}
		out = append(out, ly)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seg.seq < out[j].seg.seq })
	return out
}

func (ly *r5Layout) save(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(ly.path, ly.seg.data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// resum recomputes the checksum of the record header at off (after a
// change to its fields), so it verifies again.
func (ly *r5Layout) resum(off uint64) {
	d := ly.seg.data
	n := uint64(le.Uint32(d[off+16:]))
	le.PutUint64(d[off:], r5RecSum(d[off:off+32], d[off+32:off+32+n], ly.seg.salt))
}

// putRecord writes a complete, verifying record at off.
func (ly *r5Layout) putRecord(off, index uint64, payload []byte, batchLeft, batchPos uint32) uint64 {
	d := ly.seg.data
	le.PutUint64(d[off+8:], index)
	le.PutUint32(d[off+16:], uint32(len(payload)))
	le.PutUint32(d[off+20:], batchLeft)
	le.PutUint32(d[off+24:], batchPos)
	le.PutUint32(d[off+28:], 0)
	copy(d[off+32:], payload)
	ly.resum(off)
	return off + 32 + r5roundup8(uint64(len(payload)))
}

func (ly *r5Layout) rehead() {
	d := ly.seg.data
	le.PutUint64(d[56:], xxhash.Sum64(d[:56]))
}

func r5WriteMeta(t *testing.T, dir string, flags uint32, first, cut uint64) {
	t.Helper()
	r5WriteMetaBytes(t, dir, r5MetaBytes(1, flags, first, cut))
}

// r5MetaBytes is a META file with a checksum that verifies.
func r5MetaBytes(version, flags uint32, first, cut uint64) []byte {
	b := make([]byte, 40)
	copy(b, "PMWALMET")
	le.PutUint32(b[8:], version)
	le.PutUint32(b[12:], flags)
	le.PutUint64(b[16:], first)
	le.PutUint64(b[24:], cut)
	le.PutUint64(b[32:], xxhash.Sum64(b[:32]))
	return b
}

func r5WriteMetaBytes(t *testing.T, dir string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "META"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// r5Span returns META's first index and the decoder's last index of the
// log in dir.
func r5Span(t *testing.T, dir string) (first, last uint64) {
	t.Helper()
	_, first, _ = r5ReadMeta(t, dir)
	d, err := r5Decode(dir)
	if err != nil {
		t.Fatal(err)
	}
	return first, d.first + uint64(len(d.recs)) - 1
}

func r5ReadMeta(t *testing.T, dir string) (flags uint32, first, cut uint64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "META"))
	if err != nil || len(b) != 40 {
		t.Fatalf("META: %v (%d bytes)", err, len(b))
	}
	return le.Uint32(b[12:]), le.Uint64(b[16:]), le.Uint64(b[24:])
}

func r5CopyDir(t *testing.T, src string) string {
	t.Helper()
	dst, err := os.MkdirTemp("/dev/shm", "r5mut-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dst) })
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		// File to file: io.Copy lets the kernel copy (copy_file_range),
		// which spares the race detector megabytes of buffer accesses.
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(filepath.Join(dst, e.Name()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// r5Build makes a closed log with a few segments (three or four: every
// segment file read costs a mutation trial its megabyte, several times over
// under -race); the last op is a batch, so that cut-batch cases have
// material.
func r5Build(t *testing.T, rng *rand.Rand, opts *wal.Options) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "r5base-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := wal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ops := 1100 + rng.IntN(500)
	for op := 0; op < ops; op++ {
		if rng.IntN(3) == 0 || op == ops-1 {
			batch := make([][]byte, 1+rng.IntN(12))
			for i := range batch {
				batch[i] = r5Payload(rng, 1024)
			}
			if _, err := l.AppendBatch(batch); err != nil {
				t.Fatal(err)
			}
		} else if _, err := l.Append(r5Payload(rng, 4096)); err != nil {
			t.Fatal(err)
		}
		if op == ops/3 && rng.IntN(2) == 0 {
			if err := l.TruncateFront(l.FirstIndex() + uint64(rng.IntN(200))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(dir); err == nil {
		t.Logf("base log %s: %d files, records [%d, %d]", filepath.Base(dir), len(ents), l.FirstIndex(), l.LastIndex())
	}
	return dir
}

// r5Agree decodes dir, opens it with the library, and compares. It returns
// a description of a disagreement, or "".
func r5Agree(t *testing.T, dir string, opts *wal.Options) string {
	t.Helper()
	d, derr := r5Decode(dir)
	if derr != nil {
		r5Refused++
	}
	l, lerr := wal.Open(dir, opts)
	if derr != nil {
		if lerr == nil {
			l.Close()
			return fmt.Sprintf("decoder refuses the log (%v), library opens it: [%d, %d]", derr, l.FirstIndex(), l.LastIndex())
		}
		if !errors.Is(lerr, wal.ErrCorrupt) {
			return fmt.Sprintf("decoder refuses the log (%v), library fails without ErrCorrupt: %v", derr, lerr)
		}
		return ""
	}
	if lerr != nil {
		return fmt.Sprintf("decoder reads [%d, %d], library Open fails: %v", d.first, d.first+uint64(len(d.recs))-1, lerr)
	}
	defer l.Close()
	if l.FirstIndex() != d.first || l.LastIndex() != d.first+uint64(len(d.recs))-1 {
		return fmt.Sprintf("decoder reads [%d, %d], library [%d, %d]", d.first, d.first+uint64(len(d.recs))-1, l.FirstIndex(), l.LastIndex())
	}
	for i, want := range d.recs {
		got, err := l.Read(d.first + uint64(i))
		if err != nil || !bytes.Equal(got, want) {
			return fmt.Sprintf("record %d: decoder %d bytes, library %d bytes, %v", d.first+uint64(i), len(want), len(got), err)
		}
	}
	if err := l.Close(); err != nil {
		return fmt.Sprintf("Close after recovery: %v", err)
	}
	// After the library's recovery the directory must decode to the same
	// records, with nothing left past the tail within the bound, no
	// complete-looking record, no file that never held a record...
	d2, err := r5Decode(dir)
	if err != nil {
		return fmt.Sprintf("after recovery the decoder refuses the log: %v", err)
	}
	if d2.first != d.first || len(d2.recs) != len(d.recs) {
		return fmt.Sprintf("after recovery the decoder reads [%d, %d], before [%d, %d]", d2.first, d2.first+uint64(len(d2.recs))-1, d.first, d.first+uint64(len(d.recs))-1)
	}
	for _, s := range d2.strict {
		return "after recovery: " + s
	}
	// ... while what follows the last record of a segment that is still
	// sealed is left as it is.
	for salt, r := range d.sealed {
		r2, ok := d2.sealed[salt]
		if ok && r2 != r {
			return fmt.Sprintf("after recovery the bytes after the last record of sealed segment %d (C=%d) changed", r.seq, r.off)
		}
	}
	return ""
}

var r5Refused int

type r5Mutation struct {
	name string
	// gap: FORMAT.md does not say what a reader must do here; a
	// disagreement is reported (t.Log), not failed.
	gap bool
	// apply changes the closed log in dir; it returns false if the log
	// has no material for it.
	apply func(t *testing.T, rng *rand.Rand, dir string) bool
}

func r5Last(lys []*r5Layout) (*r5Layout, int) {
	for i := len(lys) - 1; i >= 0; i-- {
		if lys[i].seg.activated {
			return lys[i], i
		}
	}
	return nil, -1
}

var r5Mutations = []r5Mutation{
	{"torn word in one of the last records", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		ly, _ := r5Last(r5ReadLayout(t, dir))
		if ly == nil || len(ly.recs) == 0 {
			return false
		}
		r := ly.recs[len(ly.recs)-1-rng.IntN(min(len(ly.recs), 8))]
		w := r.off + 8*uint64(rng.IntN(int((r.end-r.off)/8)))
		if w >= r.off+32+r.length { // padding: not covered
			w = r.off
		}
		le.PutUint64(ly.seg.data[w:], le.Uint64(ly.seg.data[w:])^(1+uint64(rng.Uint32())))
		ly.save(t)
		return true
	}},
	{"damaged record anywhere", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		ly := lys[rng.IntN(len(lys))]
		if len(ly.recs) == 0 {
			return false
		}
		r := ly.recs[rng.IntN(len(ly.recs))]
		ly.seg.data[r.off+uint64(rng.IntN(int(32+r.length)))] ^= 0x40
		ly.save(t)
		return true
	}},
	{"cut intent in META", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		first, last := r5Span(t, dir)
		c := first - 1 + uint64(rng.IntN(int(last-first+2)))
		if rng.IntN(2) == 0 && last-first > 30 {
			c = last - uint64(rng.IntN(30))
		}
		r5WriteMeta(t, dir, 1, first, c)
		return true
	}},
	{"interrupted TruncateFront (META first moved, segments kept)", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		first, last := r5Span(t, dir)
		i := first + uint64(rng.IntN(int(last-first+4)))
		r5WriteMeta(t, dir, 0, i, 0)
		return true
	}},
	{"activation block zeroed", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		ly := lys[rng.IntN(len(lys))]
		clear(ly.seg.data[64:80])
		ly.save(t)
		return true
	}},
	{"segment file removed", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		if len(lys) < 3 {
			return false
		}
		return os.Remove(lys[rng.IntN(len(lys))].path) == nil
	}},
	{"bytes in the not-activated spare", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		ly := lys[len(lys)-1]
		if ly.seg.activated {
			return false
		}
		ly.seg.data[128+8*uint64(rng.IntN(64))] = 1
		ly.save(t)
		return true
	}},
	{"complete-looking record planted past the tail", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		ly, _ := r5Last(r5ReadLayout(t, dir))
		if ly == nil {
			return false
		}
		lastIdx := ly.seg.first - 1 + uint64(len(ly.recs))
		var dist uint64
		switch rng.IntN(3) {
		case 0:
			dist = 8 * uint64(rng.IntN(int(ly.seg.bound/8)))
		case 1:
			dist = ly.seg.bound - 8*uint64(rng.IntN(8)) // around the bound
		default:
			dist = ly.seg.bound + 8*uint64(rng.IntN(1000))
		}
		off := r5roundup8(ly.c + dist)
		p := r5Payload(rng, 256)
		if off+32+uint64(len(p)) > ly.seg.size {
			return false
		}
		var left, pos uint32
		if rng.IntN(3) == 0 { // claims to be inside a batch that started earlier
			left = uint32(rng.IntN(3))
			pos = uint32(8 * rng.IntN(int(dist/8)+1))
		}
		ly.putRecord(off, lastIdx+1+uint64(rng.IntN(40)), p, left, pos)
		ly.save(t)
		return true
	}},
	{"header bound lowered, record damaged well before the end", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		ly, _ := r5Last(r5ReadLayout(t, dir))
		if ly == nil || len(ly.recs) < 4 {
			return false
		}
		newBound := []uint64{4096, 8192, 1 << 40}[rng.IntN(3)]
		le.PutUint64(ly.seg.data[40:], newBound)
		ly.rehead()
		r := ly.recs[rng.IntN(len(ly.recs))]
		ly.seg.data[r.off+8] ^= 1 // the index: a clean mismatch
		ly.save(t)
		return true
	}},
	{"last record rewritten with flags 1", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		ly, _ := r5Last(r5ReadLayout(t, dir))
		if ly == nil || len(ly.recs) == 0 {
			return false
		}
		r := ly.recs[len(ly.recs)-1]
		le.PutUint32(ly.seg.data[r.off+28:], 1+uint32(rng.IntN(8)))
		ly.resum(r.off)
		ly.save(t)
		return true
	}},
	{"batch fields rewritten (valid checksum)", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		ly, _ := r5Last(r5ReadLayout(t, dir))
		if ly == nil || len(ly.recs) == 0 {
			return false
		}
		r := ly.recs[len(ly.recs)-1-rng.IntN(min(len(ly.recs), 6))]
		d := ly.seg.data
		switch rng.IntN(3) {
		case 0:
			le.PutUint32(d[r.off+20:], le.Uint32(d[r.off+20:])+1)
		case 1:
			le.PutUint32(d[r.off+24:], le.Uint32(d[r.off+24:])+8)
		default:
			if r.batchPos >= 8 {
				le.PutUint32(d[r.off+24:], le.Uint32(d[r.off+24:])-8)
			} else {
				le.PutUint32(d[r.off+24:], 8)
			}
		}
		ly.resum(r.off)
		ly.save(t)
		return true
	}},
	{"sealed segment's successor activated at another first", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		_, li := r5Last(lys)
		if li < 1 {
			return false
		}
		ly := lys[1+rng.IntN(li)]
		f := ly.seg.first
		if rng.IntN(2) == 0 {
			f++
		} else {
			f--
		}
		le.PutUint64(ly.seg.data[64:], f)
		var sb [16]byte
		le.PutUint64(sb[0:], ly.seg.salt)
		le.PutUint64(sb[8:], f)
		le.PutUint64(ly.seg.data[72:], xxhash.Sum64(sb[:])|1)
		ly.save(t)
		return true
	}},
	{"stray names", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		src := lys[rng.IntN(len(lys))]
		last := lys[len(lys)-1].seg.seq
		names := []string{
			fmt.Sprintf("%d.seg", last+1),
			fmt.Sprintf("%021d.seg", last+1),
			fmt.Sprintf("%020d.seg.bak", last+1),
			fmt.Sprintf("%020d.SEG", last+1),
			fmt.Sprintf("%020d.seg.tmp", last+1),
			fmt.Sprintf("x%020d.seg", last+1),
			fmt.Sprintf("%020d.free", last+7),
			fmt.Sprintf("%020d.seg", 0), // sequence number 0: not a segment name
		}
		name := names[rng.IntN(len(names))]
		return os.WriteFile(filepath.Join(dir, name), src.seg.data, 0o600) == nil
	}},
	{"META removed", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		return os.Remove(filepath.Join(dir, "META")) == nil
	}},
	{"META with the cut flag and cut+1 < first (checksum fixed)", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		_, first, _ := r5ReadMeta(t, dir)
		if first < 2 {
			first += 1 + uint64(rng.IntN(50))
		}
		r5WriteMeta(t, dir, 1, first, uint64(rng.IntN(int(min(first-1, 1<<20)))))
		return true
	}},
	{"META not valid otherwise (checksum fixed)", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		flags, first, cut := r5ReadMeta(t, dir)
		b := r5MetaBytes(1, flags, first, cut)
		switch rng.IntN(4) {
		case 0:
			b = r5MetaBytes(1, flags|2<<rng.IntN(31), first, cut) // a flag bit other than 0
		case 1:
			b = r5MetaBytes(1, 0, 0, 0) // first 0
		case 2:
			b = r5MetaBytes(uint32(2+rng.IntN(8)), flags, first, cut)
		default:
			b = append(b, 0)[:40-1+2*rng.IntN(2)] // 39 or 41 bytes
		}
		r5WriteMetaBytes(t, dir, b)
		return true
	}},
	{"reserved segment header field not zero (checksum fixed)", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		ly := lys[rng.IntN(len(lys))]
		if rng.IntN(2) == 0 {
			le.PutUint32(ly.seg.data[12:], 1<<rng.IntN(32))
		} else {
			le.PutUint64(ly.seg.data[48:], 1<<rng.IntN(64))
		}
		ly.rehead()
		ly.save(t)
		return true
	}},
	{"segment header field out of range (checksum fixed)", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		ly := lys[rng.IntN(len(lys))]
		d := ly.seg.data
		switch rng.IntN(6) {
		case 0:
			le.PutUint64(d[32:], 0) // salt
		case 1:
			le.PutUint64(d[40:], uint64(rng.IntN(32))) // bound
		case 2:
			le.PutUint64(d[24:], ly.seg.seq+1+uint64(rng.IntN(3))) // seq
		case 3:
			le.PutUint32(d[8:], uint32(2+rng.IntN(8))) // version
		case 4: // size: in range but not the file's, or out of range
			le.PutUint64(d[16:], []uint64{ly.seg.size + 4096, 1<<20 - 4096, ly.seg.size + 8, 1 << 32}[rng.IntN(4)])
		default: // size fixed to match, file grown
			ly.seg.data = append(d, make([]byte, 4096)...)
			le.PutUint64(ly.seg.data[16:], uint64(len(ly.seg.data)))
		}
		ly.rehead()
		ly.save(t)
		return true
	}},
	{"segment file that never held a record after the last one", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		ref := lys[len(lys)-1].seg
		seq := ref.seq + 1
		var b []byte
		switch v := rng.IntN(6); v {
		case 0: // empty
		case 1: // zero in full
			b = make([]byte, []uint64{100, 4096, ref.size}[rng.IntN(3)])
		default:
			// A header that decodes: the activation block does not verify
			// (the file is removed) unless v is 5 (ErrCorrupt).
			n := []uint64{4096, ref.size}[rng.IntN(2)]
			b = make([]byte, n)
			copy(b, "PMWALSEG")
			le.PutUint32(b[8:], 1)
			le.PutUint64(b[16:], ref.size)
			if n == ref.size && v != 4 {
				le.PutUint64(b[16:], ref.size+4096) // the wrong size
			}
			le.PutUint64(b[24:], seq)
			salt := rng.Uint64() | 1
			le.PutUint64(b[32:], salt)
			le.PutUint64(b[40:], ref.bound)
			le.PutUint64(b[56:], xxhash.Sum64(b[:56]))
			switch v {
			case 3: // records-like bytes after the header
				for i := 128; i < len(b); i += 8 * (1 + rng.IntN(64)) {
					le.PutUint64(b[i:], rng.Uint64())
				}
				le.PutUint64(b[64:], 1+rng.Uint64()>>1)
			case 4: // a valid header, and a block that does not verify: a second spare
				le.PutUint64(b[64:], 1+rng.Uint64()>>1)
				le.PutUint64(b[72:], rng.Uint64())
			case 5: // activated: it may have held records
				f := 1 + rng.Uint64()>>1
				le.PutUint64(b[64:], f)
				le.PutUint64(b[72:], r5ActCheck(salt, f))
			}
		}
		return os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", seq)), b, 0o600) == nil
	}},
}

// r5MutTrials mutation trials, shared out evenly over r5Mutations (fewer
// under -short and -race, see r5Scale).
const r5MutTrials = 280

// TestReview5FormatDamaged: each mutation applied to copies of a few base
// logs; decoder and library must agree.
func TestReview5FormatDamaged(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	rng := rand.New(rand.NewPCG(0xda3a, 0x6ed))
	type base struct {
		dir  string
		opts *wal.Options
	}
	var bases []base
	for i, ifb := range []int64{0, 4096, 64 << 10, 0} {
		opts := &wal.Options{Persist: wal.PersistCacheFlush, SegmentSize: 1 << 20, InFlightBound: ifb}
		if i == 3 {
			opts.RecycleSegments = 2
		}
		bases = append(bases, base{r5Build(t, rng, opts), opts})
	}
	fails := map[string]int{}
	first := map[string]string{}
	runs := map[string]int{}
	refused := map[string]int{}
	trials := r5Scaled(r5MutTrials, 3*len(r5Mutations))
	for trial := 0; trial < trials; trial++ {
		b := bases[rng.IntN(len(bases))]
		mu := r5Mutations[trial%len(r5Mutations)] // every mutation as often
		dir := r5CopyDir(t, b.dir)
		if !mu.apply(t, rng, dir) {
			continue
		}
		runs[mu.name]++
		before := r5Refused
		if msg := r5Agree(t, dir, b.opts); msg != "" {
			fails[mu.name]++
			if _, ok := first[mu.name]; !ok {
				first[mu.name] = fmt.Sprintf("trial %d: %s", trial, msg)
			}
		}
		if r5Refused != before {
			refused[mu.name]++
		}
		os.RemoveAll(dir)
	}
	for _, mu := range r5Mutations {
		if runs[mu.name] == 0 {
			t.Errorf("%s: no material in %d trials", mu.name, trials)
		}
		if fails[mu.name] > 0 {
			t.Errorf("%s: %d of %d disagree; first: %s", mu.name, fails[mu.name], runs[mu.name], first[mu.name])
		} else {
			t.Logf("%s: %d agree (%d refused as corrupt by both)", mu.name, runs[mu.name], refused[mu.name])
		}
	}
}

// r5Extra are edge cases of the tail and of sealed segments, on logs with
// a small in-flight bound; TestReview5FormatEdges runs them.
//
// Most are the regression tests for the rules FORMAT.md states since it was
// corrected to match the library; the tail probes come in pairs, one on
// each side of the rule (r5EdgeRefused says which side):
//   - bytes after the last record of a sealed segment N (a verifying record
//     with index first(N+1), or garbage): the walk stops at first(N+1)-1
//     and does not read them; recovery leaves them as they are;
//   - a complete-looking record past the bound is one only with an index
//     I such that L < I <= L + size/32: I = L + size/32 is corruption,
//     a larger I is ignored (and left in place, beyond the bound);
//   - after a complete-looking record the scan goes on at its end rounded
//     up to 8 bytes: a record inside its payload is not looked at, one at
//     that offset is;
//   - the bound test takes a record's end without padding, o+32+length.
//
// The gap probes (gap: true) log what the library does where FORMAT.md is
// silent or ambiguous.
var r5Extra = []r5Mutation{
	{"TruncateBack interrupted while rewriting the cut batch", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		ly, li := r5Last(lys)
		_, first, _ := r5ReadMeta(t, dir)
		if ly == nil {
			return false
		}
		var cands []int
		for i, r := range ly.recs {
			if r.batchLeft > 0 && r.index >= first {
				cands = append(cands, i)
			}
		}
		if len(cands) == 0 {
			return false
		}
		ci := cands[rng.IntN(len(cands))]
		c := ly.recs[ci].index
		bs := ci
		for ly.recs[bs].batchPos != 0 {
			bs--
		}
		for _, l := range lys[li+1:] {
			os.Remove(l.path)
		}
		r5WriteMeta(t, dir, 1, first, c)
		// Records bs..j-1 rewritten, record j with only the new checksum.
		j := bs + rng.IntN(ci-bs+2)
		d := ly.seg.data
		for i := bs; i <= min(j, ci); i++ {
			r := ly.recs[i]
			want := uint32(c - r.index)
			var h [32]byte
			copy(h[:], d[r.off:r.off+32])
			le.PutUint32(h[20:], want)
			le.PutUint64(d[r.off:], r5RecSum(h[:], d[r.off+32:r.off+32+r.length], ly.seg.salt))
			if i < j {
				le.PutUint32(d[r.off+20:], want)
			}
		}
		ly.save(t)
		return true
	}},
	{"cut intent past the last record", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		_, first, _ := r5ReadMeta(t, dir)
		d, err := r5Decode(dir)
		if err != nil {
			t.Fatal(err)
		}
		r5WriteMeta(t, dir, 1, first, d.first+uint64(len(d.recs))+uint64(rng.IntN(3)))
		return true
	}},
	{"valid record after the last one of a sealed segment", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		lys := r5ReadLayout(t, dir)
		_, li := r5Last(lys)
		if li < 1 {
			return false
		}
		k := rng.IntN(li)
		ly := lys[k]
		if ly.c+32+64 > ly.seg.size {
			return false
		}
		switch rng.IntN(3) {
		case 0:
			ly.putRecord(ly.c, lys[k+1].seg.first, r5Payload(rng, 32), 0, 0)
		case 1: // the first of a batch that never ends
			ly.putRecord(ly.c, lys[k+1].seg.first, r5Payload(rng, 32), 1+uint32(rng.IntN(3)), 0)
		default: // not a record
			for i := ly.c; i < min(ly.c+4096, ly.seg.size); i += 8 {
				le.PutUint64(ly.seg.data[i:], rng.Uint64())
			}
		}
		ly.save(t)
		return true
	}},
	{"complete-looking record past the bound with an index far ahead", false, r5PlantFar(false)},
	{"complete-looking record past the bound with the largest candidate index", false, r5PlantFar(true)},
	{"complete-looking record inside another's payload", false, r5PlantInner(false)},
	{"complete-looking record at another's end rounded up to 8", false, r5PlantInner(true)},
	{"complete-looking record whose payload ends at the bound, padding past it", false, r5PlantAtBound(false)},
	{"complete-looking record whose payload ends past the bound, in its last word", false, r5PlantAtBound(true)},
	{"META missing, and no segment file ever held a record", false, func(t *testing.T, rng *rand.Rand, dir string) bool {
		// FORMAT.md: "A directory without META in which no segment file
		// ever held a record is a new log".
		lys := r5ReadLayout(t, dir)
		for _, ly := range lys {
			if ly.seg.activated {
				os.Remove(ly.path)
			}
		}
		if len(lys) == 0 || lys[len(lys)-1].seg.activated {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", 1)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return os.Remove(filepath.Join(dir, "META")) == nil
	}},
}

// r5EdgeRefused says, for the probes of r5Extra planted on one side of a
// rule, whether both must refuse the log (true) or both open it (false).
var r5EdgeRefused = map[string]bool{
	"valid record after the last one of a sealed segment":                         false,
	"complete-looking record past the bound with an index far ahead":              false,
	"complete-looking record past the bound with the largest candidate index":     true,
	"complete-looking record inside another's payload":                            false,
	"complete-looking record at another's end rounded up to 8":                    true,
	"complete-looking record whose payload ends at the bound, padding past it":    false,
	"complete-looking record whose payload ends past the bound, in its last word": true,
}

// r5PlantFar plants, past the bound, a complete-looking record whose index
// is L + size/32 (the largest candidate: corruption, candidate set) or
// above it (not a record of this log: ignored, and left where it is).
func r5PlantFar(candidate bool) func(t *testing.T, rng *rand.Rand, dir string) bool {
	return func(t *testing.T, rng *rand.Rand, dir string) bool {
		ly, _ := r5Last(r5ReadLayout(t, dir))
		if ly == nil {
			return false
		}
		off := r5roundup8(ly.c+ly.seg.bound) + 8*uint64(rng.IntN(64))
		if off+64 > ly.seg.size {
			return false
		}
		lastIdx := ly.seg.first - 1 + uint64(len(ly.recs))
		idx := lastIdx + ly.seg.size/32
		if !candidate {
			idx += 1 + uint64(rng.IntN(1000))
		}
		ly.putRecord(off, idx, []byte("far"), 0, 0)
		ly.save(t)
		return true
	}
}

// r5PlantInner plants an outer record, of an oversized batch that started
// at C (so it may end past the bound), and an inner one, a batch of its own
// starting after C and ending past the bound: inside the outer's payload
// (not looked at: a torn tail), or at the outer's end rounded up to 8 bytes
// (looked at: corruption, atEnd set).
func r5PlantInner(atEnd bool) func(t *testing.T, rng *rand.Rand, dir string) bool {
	return func(t *testing.T, rng *rand.Rand, dir string) bool {
		ly, _ := r5Last(r5ReadLayout(t, dir))
		if ly == nil {
			return false
		}
		outerOff := ly.c + 8
		outerLen := ly.seg.bound + 256 + uint64(rng.IntN(8)) // padded or not
		if outerOff+32+outerLen+64 > ly.seg.size {
			return false
		}
		lastIdx := ly.seg.first - 1 + uint64(len(ly.recs))
		if atEnd {
			payload := make([]byte, outerLen)
			for i := range payload {
				payload[i] = byte(i)
			}
			innerOff := ly.putRecord(outerOff, lastIdx+2, payload, 0, 8)
			ly.putRecord(innerOff, lastIdx+3, []byte("inner"), 0, 0)
		} else {
			innerOff := (outerOff + 32 + outerLen - 64) &^ 7
			ly.putRecord(innerOff, lastIdx+3, []byte("inner"), 0, 0)
			payload := bytes.Clone(ly.seg.data[outerOff+32 : outerOff+32+outerLen])
			ly.putRecord(outerOff, lastIdx+2, payload, 0, 8)
		}
		ly.save(t)
		return true
	}
}

// r5PlantAtBound needs a bound of 8k+4. A record at C+bound-36 with a
// payload of 4 bytes ends at C+bound (within the bound: a torn tail) and
// occupies 32+roundup8(4) = 40 bytes, to C+bound+4; with 5 to 8 bytes
// (past set) it ends past the bound (corruption) and occupies as much.
func r5PlantAtBound(past bool) func(t *testing.T, rng *rand.Rand, dir string) bool {
	return func(t *testing.T, rng *rand.Rand, dir string) bool {
		ly, _ := r5Last(r5ReadLayout(t, dir))
		if ly == nil || ly.seg.bound%8 != 4 {
			return false
		}
		off := ly.c + ly.seg.bound - 36
		if off+64 > ly.seg.size {
			return false
		}
		lastIdx := ly.seg.first - 1 + uint64(len(ly.recs))
		p := []byte("abcd")
		if past {
			p = []byte("abcdefgh")[:5+rng.IntN(4)]
		}
		ly.putRecord(off, lastIdx+1+uint64(rng.IntN(4)), p, 0, 0)
		ly.save(t)
		return true
	}
}

// TestReview5FormatEdges: the probes above, on logs written with a small
// in-flight bound (so "past the bound" fits in a segment), one of them not
// a multiple of 8.
func TestReview5FormatEdges(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	rng := rand.New(rand.NewPCG(0xed6e, 0x5))
	type base struct {
		dir  string
		opts *wal.Options
	}
	var bases []base
	for _, ifb := range []int64{4096, 4100} {
		opts := &wal.Options{Persist: wal.PersistCacheFlush, SegmentSize: 1 << 20, InFlightBound: ifb}
		bases = append(bases, base{r5Build(t, rng, opts), opts})
	}
	trials := r5Scaled(10, 4)
	for _, mu := range r5Extra {
		t.Run(mu.name, func(t *testing.T) {
			runs, fails, refused := 0, 0, 0
			var firstMsg string
			for trial := 0; trial < trials; trial++ {
				b := bases[trial%len(bases)]
				dir := r5CopyDir(t, b.dir)
				if !mu.apply(t, rng, dir) {
					continue
				}
				runs++
				before := r5Refused
				msg := r5Agree(t, dir, b.opts)
				if r5Refused != before {
					refused++
				}
				if msg != "" {
					fails++
					if firstMsg == "" {
						firstMsg = msg
					}
				}
				os.RemoveAll(dir)
			}
			if runs == 0 {
				t.Fatal("no material for the mutation")
			}
			switch {
			case fails > 0 && mu.gap:
				t.Logf("FORMAT.md gap: %d of %d disagree; first: %s", fails, runs, firstMsg)
			case fails > 0:
				t.Errorf("%d of %d disagree; first: %s", fails, runs, firstMsg)
			}
			if want, ok := r5EdgeRefused[mu.name]; ok && fails == 0 && refused != map[bool]int{true: runs}[want] {
				t.Errorf("%d of %d refused as corrupt by both; the probe is meant to plant only logs to %s", refused, runs,
					map[bool]string{true: "refuse", false: "open"}[want])
			}
			switch {
			case fails == 0:
				t.Logf("%d agree (%d refused as corrupt by both)", runs, refused)
			}
		})
	}
}
