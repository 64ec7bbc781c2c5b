package wal

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// On-media layout constants. FORMAT.md describes every byte.
const (
	segMagic       = "PMWALSEG" // bytes 0..7 of every segment file
	formatVersion  = 1          // bytes 8..11
	segHeaderSize  = 128        // records start here
	activationOff  = 64         // firstIndex and its check live at 64..79
	recHeaderSize  = 32         // checksum, index, length, batchLeft, batchPos, flags
	recAlign       = 8          // every record starts on an 8-byte boundary
	minSegmentSize = 1 << 20
	maxSegmentSize = 1<<32 - 4096 // offsets and lengths are uint32
	segAlign       = 4096

	// maxIndex is the last index a record can have, so that the index
	// after it (LastIndex+1, the next to be given) is still a uint64.
	maxIndex = 1<<64 - 2

	defaultSegmentSize   = 64 << 20
	defaultInFlightBound = 1 << 20
)

var le = binary.LittleEndian

// recSize is the number of bytes a record with an n-byte payload occupies.
func recSize(n int) int {
	return recHeaderSize + (n+recAlign-1)&^(recAlign-1)
}

// recHeader is a decoded record header.
type recHeader struct {
	sum       uint64
	index     uint64
	length    uint32
	batchLeft uint32 // records after this one in its batch
	batchPos  uint32 // bytes from the batch's first record to this one
	flags     uint32 // reserved, zero
}

func readRecHeader(b []byte) recHeader {
	_ = b[recHeaderSize-1]
	return recHeader{
		sum:       le.Uint64(b[0:]),
		index:     le.Uint64(b[8:]),
		length:    le.Uint32(b[16:]),
		batchLeft: le.Uint32(b[20:]),
		batchPos:  le.Uint32(b[24:]),
		flags:     le.Uint32(b[28:]),
	}
}

// encodeRecHeader fills the 32-byte header of a record, checksum included.
func encodeRecHeader(hdr []byte, salt, index uint64, data []byte, batchLeft, batchPos uint32) {
	encodeRecHeaderSum(hdr, salt, index, len(data), batchLeft, batchPos, xxhash.Sum64(data))
}

// encodeRecHeaderSum is encodeRecHeader for a payload of n bytes whose
// xxhash64 is already known (computed while it was copied).
func encodeRecHeaderSum(hdr []byte, salt, index uint64, n int, batchLeft, batchPos uint32, payloadSum uint64) {
	_ = hdr[recHeaderSize-1]
	// The three words after the checksum, composed in registers and
	// hashed from there: reading them back from hdr would load 8 bytes
	// stored 4 at a time, which the store buffer cannot forward, so the
	// load would wait until every earlier store is complete, on the
	// append path the previous record's fenced stores too.
	w2 := uint64(uint32(n)) | uint64(batchLeft)<<32
	w3 := uint64(batchPos) // and 4 zero bytes
	le.PutUint64(hdr[0:], xxhSum32(index, w2, w3, payloadSum)^salt)
	le.PutUint64(hdr[8:], index)
	le.PutUint64(hdr[16:], w2)
	le.PutUint64(hdr[24:], w3)
}

// recordSum is a record's checksum: xxhash64 of the 24 header bytes after
// the checksum field followed by xxhash64 of the payload (8 bytes, little
// endian), XORed with the segment's salt, so a record written under
// another salt never verifies. Hashing the payload on its own lets the
// append path checksum the caller's bytes in place and write the record
// with non-temporal stores, without reading the mapping back.
func recordSum(hdr, data []byte, salt uint64) uint64 {
	return chainSum(hdr, xxhash.Sum64(data), salt)
}

func chainSum(hdr []byte, payloadSum, salt uint64) uint64 {
	_ = hdr[recHeaderSize-1]
	return xxhSum32(le.Uint64(hdr[8:]), le.Uint64(hdr[16:]), le.Uint64(hdr[24:]), payloadSum) ^ salt
}

// putRecord writes one record into dst (recSize(len(data)) bytes of the
// mapping) with plain stores: header, payload, zero padding.
func putRecord(dst []byte, salt, index uint64, data []byte, batchLeft, batchPos uint32) {
	encodeRecHeader(dst, salt, index, data, batchLeft, batchPos)
	n := copy(dst[recHeaderSize:], data)
	clear(dst[recHeaderSize+n:])
}

// segHeader is the decoded first cache line of a segment file.
type segHeader struct {
	version uint32
	size    uint64 // whole file size
	seq     uint64 // sequence number, also the file name
	salt    uint64 // random per segment, never zero
	bound   uint64 // in-flight bound the writer kept (bytes)
}

func encodeSegHeader(b []byte, h segHeader) {
	_ = b[activationOff-1]
	copy(b[0:8], segMagic)
	le.PutUint32(b[8:], h.version)
	le.PutUint32(b[12:], 0)
	le.PutUint64(b[16:], h.size)
	le.PutUint64(b[24:], h.seq)
	le.PutUint64(b[32:], h.salt)
	le.PutUint64(b[40:], h.bound)
	le.PutUint64(b[48:], 0)
	le.PutUint64(b[56:], xxhash.Sum64(b[0:56]))
}

// decodeSegHeader returns the header and a reason when it is not valid.
func decodeSegHeader(b []byte) (segHeader, string) {
	if len(b) < segHeaderSize {
		return segHeader{}, "file shorter than a segment header"
	}
	if string(b[0:8]) != segMagic {
		return segHeader{}, "bad magic"
	}
	if xxhash.Sum64(b[0:56]) != le.Uint64(b[56:]) {
		return segHeader{}, "segment header checksum mismatch"
	}
	h := segHeader{
		version: le.Uint32(b[8:]),
		size:    le.Uint64(b[16:]),
		seq:     le.Uint64(b[24:]),
		salt:    le.Uint64(b[32:]),
		bound:   le.Uint64(b[40:]),
	}
	if h.version != formatVersion {
		return h, "unsupported format version"
	}
	if h.size < minSegmentSize || h.size > maxSegmentSize || h.size%segAlign != 0 {
		return h, "segment size out of range"
	}
	if h.salt == 0 || h.bound < recHeaderSize || le.Uint32(b[12:]) != 0 || le.Uint64(b[48:]) != 0 {
		return h, "invalid header field"
	}
	return h, ""
}

// activationCheck protects the activation block (firstIndex) against a torn
// write: the block is valid only when both words agree.
func activationCheck(salt, first uint64) uint64 {
	var b [16]byte
	le.PutUint64(b[0:], salt)
	le.PutUint64(b[8:], first)
	return xxhash.Sum64(b[:]) | 1 // never zero: an all-zero block is never valid
}

// META: the log's first index and a pending back truncation, in a small
// file replaced atomically.
const (
	metaName  = "META"
	metaMagic = "PMWALMET"
	metaSize  = 40
)

// meta is the decoded META file.
type meta struct {
	first   uint64 // FirstIndex
	cut     uint64 // with cutting: TruncateBack(cut) in progress
	cutting bool
}

func encodeMeta(b []byte, m meta) {
	_ = b[metaSize-1]
	copy(b[0:8], metaMagic)
	le.PutUint32(b[8:], formatVersion)
	var flags uint32
	if m.cutting {
		flags = 1
	}
	le.PutUint32(b[12:], flags)
	le.PutUint64(b[16:], m.first)
	le.PutUint64(b[24:], m.cut)
	le.PutUint64(b[32:], xxhash.Sum64(b[0:32]))
}

func decodeMeta(b []byte) (meta, string) {
	switch {
	case len(b) != metaSize:
		return meta{}, fmt.Sprintf("%d bytes, want %d", len(b), metaSize)
	case string(b[0:8]) != metaMagic:
		return meta{}, "bad magic"
	case xxhash.Sum64(b[0:32]) != le.Uint64(b[32:]):
		return meta{}, "checksum mismatch"
	case le.Uint32(b[8:]) != formatVersion || le.Uint32(b[12:]) > 1:
		return meta{}, "unsupported version or flags"
	case le.Uint64(b[16:]) == 0:
		return meta{}, "first index 0"
	}
	m := meta{first: le.Uint64(b[16:]), cut: le.Uint64(b[24:]), cutting: le.Uint32(b[12:]) == 1}
	if m.cutting && m.cut+1 < m.first {
		return meta{}, "truncation point below the first index"
	}
	return m, ""
}
