package raftstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Record encoding of a raft.Log, version 1 (README.md has the table):
//
//	byte 0     version, 1
//	byte 1     Type (raft.LogType)
//	byte 2     flags: bit 0 set when AppendedAt is not the zero time;
//	           the other bits are 0
//	uvarint    Index
//	uvarint    Term
//	varint     AppendedAt, whole seconds since 1970 (zigzag), if flag bit 0
//	uvarint    AppendedAt, nanoseconds within the second (< 1e9), if flag bit 0
//	uvarint    len(Data), then Data
//	uvarint    len(Extensions), then Extensions
//
// and nothing after. The wal checksums every record, so the encoding adds
// no checksum of its own.
const (
	logVersion1     = 1
	flagAppendedAt  = 1 << 0
	logHeaderLen    = 3
	knownLogFlags   = flagAppendedAt
	maxEncodedFixed = logHeaderLen + 5*binary.MaxVarintLen64
)

// encodedLogSize is an upper bound on the size of l's encoding.
func encodedLogSize(l *raft.Log) int {
	return maxEncodedFixed + len(l.Data) + len(l.Extensions)
}

// appendLog appends the version-1 encoding of l to b.
func appendLog(b []byte, l *raft.Log) []byte {
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	b = append(b, logVersion1, byte(l.Type), flags)
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	if flags&flagAppendedAt != 0 {
		b = binary.AppendVarint(b, l.AppendedAt.Unix())
		b = binary.AppendUvarint(b, uint64(l.AppendedAt.Nanosecond()))
	}
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	b = append(b, l.Extensions...)
	return b
}

// decodeLog decodes rec into l. Data and Extensions alias rec (nil when
// empty); AppendedAt comes back in the local time zone without a monotonic
// clock reading. A record that is short, has trailing bytes, unknown flags
// or an impossible field gives ErrCorrupt; a version other than 1 gives
// ErrVersion. l is changed only on success.
func decodeLog(rec []byte, l *raft.Log) error {
	if len(rec) < logHeaderLen {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(rec), logHeaderLen)
	}
	if rec[0] != logVersion1 {
		return fmt.Errorf("%w: log record version %d (this code reads version %d)", ErrVersion, rec[0], logVersion1)
	}
	typ, flags := raft.LogType(rec[1]), rec[2]
	if flags&^knownLogFlags != 0 {
		return fmt.Errorf("%w: unknown flags %#02x", ErrCorrupt, flags)
	}
	d := decoder{b: rec, off: logHeaderLen}
	index := d.uvarint("index")
	term := d.uvarint("term")
	var at time.Time
	if flags&flagAppendedAt != 0 {
		sec := d.varint("appended-at seconds")
		nsec := d.uvarint("appended-at nanoseconds")
		if d.err == nil && nsec >= 1e9 {
			d.fail("appended-at nanoseconds %d out of range", nsec)
		}
		if d.err == nil {
			at = time.Unix(sec, int64(nsec))
		}
	}
	data := d.bytes("data")
	ext := d.bytes("extensions")
	if d.err == nil && d.off != len(rec) {
		d.fail("%d trailing bytes", len(rec)-d.off)
	}
	if d.err != nil {
		return d.err
	}
	*l = raft.Log{Index: index, Term: term, Type: typ, Data: data, Extensions: ext, AppendedAt: at}
	return nil
}

// decoder reads varints and length-prefixed byte strings, keeping the
// first error.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrCorrupt, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad or truncated varint (%s)", what)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad or truncated varint (%s)", what)
		return 0
	}
	d.off += n
	return v
}

// bytes reads a uvarint length and that many bytes; empty gives nil.
func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("%s length %d exceeds the %d bytes left", what, n, len(d.b)-d.off)
		return nil
	}
	if n == 0 {
		return nil
	}
	out := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return out
}
