// Package daxcut is the power-cut workload of the DAX guest (test/dax) and
// its oracle: the payloads the guest appends, the verification the guest
// runs on the log after each cut, and the host's check of what the guest
// reports against what it acknowledged before the cut.
//
// One writer appends single records and batches of up to MaxBatch. Each
// payload carries a header naming its index, the call (single or batch)
// it was appended in, and the boot (incarnation) whose appender wrote it;
// the rest is a deterministic fill from the seed, the index and the
// incarnation. So the guest can verify every byte of every record it finds,
// and the host can tell which boot wrote each range of the log.
package daxcut

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

const (
	// MaxBatch is the largest AppendBatch the appender makes.
	MaxBatch = 8
	// HdrSize is the size of the payload header; every payload has one.
	HdrSize = 32
	magic   = 0x58414450 // "PDAX"
)

// Rec is what a payload says about itself.
type Rec struct {
	Index     uint64 // the log index it was appended at
	CallFirst uint64 // index of the first record of its Append or AppendBatch
	CallSize  uint16 // records in that call
	Inc       uint32 // boot whose appender wrote it
	Len       int    // payload length, at least HdrSize
}

// Len picks a payload length: mostly 32..512 bytes, sometimes up to MaxLen.
func Len(rng *rand.Rand) int {
	if rng.IntN(30) == 0 {
		return 513 + rng.IntN(MaxLen-512)
	}
	return HdrSize + rng.IntN(513-HdrSize)
}

// Payload appends to dst[:0] the payload of r.
func Payload(dst []byte, seed uint64, r Rec) []byte {
	dst = append(dst[:0], make([]byte, r.Len)...)
	binary.LittleEndian.PutUint32(dst[0:], magic)
	binary.LittleEndian.PutUint32(dst[4:], uint32(r.Len))
	binary.LittleEndian.PutUint64(dst[8:], r.Index)
	binary.LittleEndian.PutUint64(dst[16:], r.CallFirst)
	binary.LittleEndian.PutUint32(dst[24:], r.Inc)
	binary.LittleEndian.PutUint16(dst[28:], r.CallSize)
	binary.LittleEndian.PutUint16(dst[30:], uint16(r.Index-r.CallFirst))
	fill(dst[HdrSize:], seed, r)
	return dst
}

// fill copies the record's fill from a pool of random bytes made from the
// seed, at an offset chosen by the index, the incarnation and the call size:
// cheap to make and to verify, and different for every record that could
// land at an index.
func fill(b []byte, seed uint64, r Rec) {
	p := pool(seed)
	h := (r.Index ^ uint64(r.Inc)<<40 ^ uint64(r.CallSize)<<56) * 0x9e3779b97f4a7c15
	off := int(h>>40) % poolSpread
	copy(b, p[off:off+len(b)])
}

const (
	// MaxLen is the longest payload Len picks.
	MaxLen     = 8192
	poolSpread = 1 << 16
)

var (
	poolSeed  uint64
	poolBytes []byte
)

func pool(seed uint64) []byte {
	if poolBytes != nil && poolSeed == seed {
		return poolBytes
	}
	b := make([]byte, poolSpread+MaxLen)
	g := rand.NewPCG(seed, 0x706f6f6c)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], g.Uint64())
	}
	poolSeed, poolBytes = seed, b
	return b
}

// Decode says which record b is, or why it is none the appender wrote at
// index.
func Decode(b []byte, seed, index uint64, scratch *[]byte) (Rec, error) {
	if len(b) < HdrSize {
		return Rec{}, fmt.Errorf("record %d: %d bytes, shorter than the payload header", index, len(b))
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != magic {
		return Rec{}, fmt.Errorf("record %d: magic %#x, want %#x", index, m, magic)
	}
	r := Rec{
		Len:       int(binary.LittleEndian.Uint32(b[4:])),
		Index:     binary.LittleEndian.Uint64(b[8:]),
		CallFirst: binary.LittleEndian.Uint64(b[16:]),
		Inc:       binary.LittleEndian.Uint32(b[24:]),
		CallSize:  binary.LittleEndian.Uint16(b[28:]),
	}
	pos := binary.LittleEndian.Uint16(b[30:])
	switch {
	case r.Len > MaxLen:
		return r, fmt.Errorf("record %d: %d bytes, longer than any payload the appender makes", index, len(b))
	case r.Len != len(b):
		return r, fmt.Errorf("record %d: %d bytes, the header says %d", index, len(b), r.Len)
	case r.Index != index:
		return r, fmt.Errorf("record %d: the payload says it was appended at index %d", index, r.Index)
	case r.CallSize < 1 || r.CallSize > MaxBatch || r.CallFirst > r.Index || r.Index-r.CallFirst != uint64(pos) || uint64(pos) >= uint64(r.CallSize) || r.Inc == 0:
		return r, fmt.Errorf("record %d: inconsistent header %+v, position %d", index, r, pos)
	}
	*scratch = Payload(*scratch, seed, r)
	if !bytes.Equal(b, *scratch) {
		i := 0
		for b[i] == (*scratch)[i] {
			i++
		}
		return r, fmt.Errorf("record %d (%+v): byte %d is %#x, want %#x", index, r, i, b[i], (*scratch)[i])
	}
	return r, nil
}

// Run is a range of consecutive indexes written by one incarnation.
type Run struct {
	From, To uint64
	Inc      uint32
}

// Verifier checks the records of a log in index order: each is a payload
// the appender wrote at that index, calls are whole (a batch is never cut
// short except by the end of the log, which End rejects), and incarnations
// never go backwards. It collects the runs of incarnations.
type Verifier struct {
	Seed    uint64
	Runs    []Run
	cur     Rec // the record before, Index 0 if none
	scratch []byte
}

// Next verifies the record b at index.
func (v *Verifier) Next(index uint64, b []byte) error {
	r, err := Decode(b, v.Seed, index, &v.scratch)
	if err != nil {
		return err
	}
	p := v.cur
	if p.Index != 0 {
		if index != p.Index+1 {
			return fmt.Errorf("record %d follows record %d", index, p.Index)
		}
		inCall := p.Index+1 < p.CallFirst+uint64(p.CallSize)
		switch {
		case inCall && (r.CallFirst != p.CallFirst || r.CallSize != p.CallSize || r.Inc != p.Inc):
			return fmt.Errorf("record %d: a call of %d records from %d (incarnation %d) is cut short by %+v", index, p.CallSize, p.CallFirst, p.Inc, r)
		case !inCall && r.CallFirst != index:
			return fmt.Errorf("record %d: starts in the middle of a call: %+v", index, r)
		case r.Inc < p.Inc:
			return fmt.Errorf("record %d: written by incarnation %d after a record of incarnation %d", index, r.Inc, p.Inc)
		}
	} else if r.CallFirst != index {
		return fmt.Errorf("first record %d: in the middle of a call: %+v", index, r)
	}
	if n := len(v.Runs); n > 0 && v.Runs[n-1].Inc == r.Inc && v.Runs[n-1].To+1 == index {
		v.Runs[n-1].To = index
	} else {
		v.Runs = append(v.Runs, Run{From: index, To: index, Inc: r.Inc})
	}
	v.cur = r
	return nil
}

// End checks that the log, which ends at last, ended at the last record
// verified and on the end of a call: a batch is whole or absent.
func (v *Verifier) End(last uint64) error {
	p := v.cur
	if p.Index != last {
		return fmt.Errorf("verified up to %d, but LastIndex is %d", p.Index, last)
	}
	if p.Index != 0 && p.Index != p.CallFirst+uint64(p.CallSize)-1 {
		return fmt.Errorf("the log ends at %d inside a batch of %d records from %d (incarnation %d): a torn batch was kept", p.Index, p.CallSize, p.CallFirst, p.Inc)
	}
	return nil
}

// Summary is what the guest's check reports after recovering the log.
type Summary struct {
	Inc      uint32   `json:"inc"`     // the boot that checked
	First    uint64   `json:"first"`   // FirstIndex
	Last     uint64   `json:"last"`    // LastIndex
	Persist  string   `json:"persist"` // Persist(); "none" if there was no log yet
	Torn     bool     `json:"torn"`    // recovery dropped a torn tail
	Dropped  int      `json:"dropped"` // complete-looking records recovery dropped
	Segments int      `json:"segs"`
	Runs     []Run    `json:"runs"`
	Bad      []string `json:"bad,omitempty"` // verification failures
	Millis   int64    `json:"ms"`            // time to open, recover and verify
}

// Encode gives the summary as one line.
func (s Summary) Encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// ParseSummary reads what Encode wrote.
func ParseSummary(line string) (Summary, error) {
	var s Summary
	err := json.Unmarshal([]byte(line), &s)
	return s, err
}
