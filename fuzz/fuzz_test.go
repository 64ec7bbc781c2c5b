package fuzz

import (
	"errors"
	"fmt"
	"path"
	"runtime"
	"testing"

	"github.com/pmwal/wal"
)

// FuzzCrash takes the operation sequence, both crash points and the
// persistence mode from the fuzzer's bytes and checks the oracle after
// each crash.
//
//	go test ./fuzz -run '^$' -fuzz FuzzCrash -fuzztime 10m
func FuzzCrash(f *testing.F) {
	f.Add(uint16(5), uint8(7), false, []byte{0x00, 40, 0x21, 200, 0x03, 90, 0x40, 255, 0x00, 1})
	f.Add(uint16(40), uint8(20), true, []byte{0x10, 100, 0x05, 30, 0xe0, 250, 0x02, 8})
	f.Add(uint16(1), uint8(1), false, []byte{})
	f.Fuzz(func(t *testing.T, crash1 uint16, crash2 uint8, msync bool, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		mode := wal.PersistCacheFlush
		if msync {
			mode = wal.PersistMsync
		}
		w := workload{seed: 1, crash1: 1 + int(crash1%400), crash2: 1 + int(crash2), ops: 100, mode: mode, bound: 4096, opBytes: ops}
		if _, err := w.run(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzTornWrite tears the last append of a short workload in every way the
// fuzzer chooses: which of its dirty 8-byte words reach the media, old or
// new or as last flushed.
//
//	go test ./fuzz -run '^$' -fuzz FuzzTornWrite -fuzztime 10m
func FuzzTornWrite(f *testing.F) {
	f.Add(uint8(3), uint16(300), false, []byte{1, 2, 0, 1, 1, 2, 0, 0, 2, 1})
	f.Add(uint8(1), uint16(4000), false, []byte{2, 2, 2, 2, 0})
	f.Add(uint8(6), uint16(64), true, []byte{0, 1})
	f.Fuzz(func(t *testing.T, n uint8, size uint16, batch bool, choices []byte) {
		sim := NewFromBytes(choices)
		opts := &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: sim, InFlightBound: 4096}
		l, err := wal.Open(logDir, opts)
		if err != nil {
			t.Fatal(err)
		}
		o := newOracle(1)
		count := 1 + int(n%8)
		for i := 0; i < count; i++ {
			p := payload(3, i, int(size)%5000)
			idx, err := l.Append(p)
			if err != nil {
				t.Fatal(err)
			}
			o.appended(idx, [][]byte{p}, false, true)
		}
		// The torn append: crash at its fence, so its stores are all made
		// and flushed but none is known durable.
		last := [][]byte{payload(4, 0, int(size)%5000)}
		if batch {
			last = append(last, payload(4, 1, int(size)%300), payload(4, 2, 8))
		}
		appendLast := func(l *wal.Log) {
			var err error
			if batch {
				_, err = l.AppendBatch(last)
			} else {
				_, err = l.Append(last[0])
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		before := sim.Events()
		next := l.LastIndex() + 1
		appendLast(l)
		fence := sim.Events() // the append's last event is its fence
		l.Close()
		o.appended(next, last, batch, false)

		// Replay the same workload with the crash armed at that fence.
		sim2 := NewFromBytes(choices)
		opts.Media = sim2
		l, err = wal.Open(logDir, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < count; i++ {
			if _, err := l.Append(payload(3, i, int(size)%5000)); err != nil {
				t.Fatal(err)
			}
		}
		if sim2.Events() != before {
			t.Fatalf("replay diverged: %d events, first run %d", sim2.Events(), before)
		}
		sim2.CrashAt(fence)
		appendLast(l)
		l.Close()
		img := sim2.Image()
		if img == nil {
			t.Fatal("the crash at the fence did not happen")
		}
		opts.Media = img
		l, err = wal.Open(logDir, opts)
		if err != nil {
			t.Fatalf("recovery: %v", err)
		}
		defer l.Close()
		if err := o.check(l); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRecoverSegment opens a log whose segment file holds the fuzzer's
// bytes: XORed over a segment of valid records (from the header's end, or
// from byte 0), or written over it from byte 0. Open and the reads that
// follow must never panic nor allocate without bound, and must give either
// ErrCorrupt or a log whose every record reads back.
//
//	go test ./fuzz -run '^$' -fuzz FuzzRecoverSegment -fuzztime 10m
func FuzzRecoverSegment(f *testing.F) {
	f.Add(uint8(0), []byte{})
	f.Add(uint8(2), []byte("PMWALSEG"))
	f.Add(uint8(0), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Add(uint8(0), append(make([]byte, 700), 0x80))
	f.Add(uint8(1), append(make([]byte, 64), 1))
	f.Fuzz(func(t *testing.T, how uint8, data []byte) {
		const size = 1 << 20
		for _, repair := range []bool{false, true} {
			sim, err := segmentSim(how%3, data)
			if err != nil {
				t.Fatal(err)
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			l, err := wal.Open(logDir, &wal.Options{SegmentSize: size, Persist: wal.PersistCacheFlush, Media: sim, RepairCorruption: repair})
			runtime.ReadMemStats(&m1)
			if grown := m1.TotalAlloc - m0.TotalAlloc; grown > 16*size {
				t.Fatalf("Open allocated %d bytes for a %d-byte segment", grown, size)
			}
			if err != nil {
				if !errors.Is(err, wal.ErrCorrupt) {
					t.Fatalf("repair %v: error is not ErrCorrupt: %v", repair, err)
				}
				if repair {
					t.Fatalf("repair failed: %v", err)
				}
				continue
			}
			if l.FirstIndex() != 1 {
				t.Fatalf("FirstIndex %d", l.FirstIndex())
			}
			for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
				got, err := l.Read(i)
				if err != nil {
					t.Fatalf("record %d of %d..%d: %v", i, l.FirstIndex(), l.LastIndex(), err)
				}
				if want := payload(9, int(i), int(i)*37%500); string(got) != string(want) {
					t.Fatalf("record %d kept but not as written", i)
				}
			}
			if idx, err := l.Append([]byte("after")); err != nil || idx != l.LastIndex() {
				t.Fatalf("append after recovery: %d, %v", idx, err)
			}
			l.Close()
		}
	})
}

// segmentSim builds storage holding a log of 20 records in one segment,
// then applies data to the segment file: XOR from byte 128 (how 0), XOR
// from byte 0 (1), or overwrite from byte 0 (2).
func segmentSim(how uint8, data []byte) (*Sim, error) {
	sim := New(7, 7)
	l, err := wal.Open(logDir, &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: sim})
	if err != nil {
		return nil, err
	}
	for i := 1; i <= 20; i++ {
		if _, err := l.Append(payload(9, i, i*37%500)); err != nil {
			return nil, err
		}
	}
	l.Close()
	seg := sim.Bytes(path.Join(logDir, segFile(1)))
	if seg == nil {
		return nil, fmt.Errorf("no segment 1 in %v", sim.Files())
	}
	switch how {
	case 0:
		xorInto(seg[128:], data)
	case 1:
		xorInto(seg, data)
	default:
		copy(seg, data)
	}
	return sim, nil
}

func xorInto(dst, data []byte) {
	for i := 0; i < len(data) && i < len(dst); i++ {
		dst[i] ^= data[i]
	}
}

func segFile(seq uint64) string { return fmt.Sprintf("%020d.seg", seq) }
