package raftstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	"github.com/pmwal/wal"
)

// The stable store is a small wal.Log of its own. Every Set appends one
// record holding the whole key/value state after the change, so the last
// record is the state and a Set is atomic: the wal's records are
// checksummed and whole or absent after a crash. Older records are dropped
// with TruncateFront every compactStableEvery records.
//
// State encoding, version 1:
//
//	byte 0    version, 1
//	uvarint   number of keys
//	per key, in strictly increasing byte order of the keys:
//	uvarint   len(key), then key
//	uvarint   len(value), then value
//
// and nothing after.
const (
	stableVersion1     = 1
	compactStableEvery = 1024
	// stableSegmentSize is the smallest segment the wal accepts; raft
	// keeps a handful of small keys here.
	stableSegmentSize = 1 << 20
)

type stableStore struct {
	mu    sync.Mutex
	log   *wal.Log
	state map[string][]byte
	buf   []byte
	shut  bool
}

func openStable(dir string, opts wal.Options) (*stableStore, error) {
	opts.SegmentSize = stableSegmentSize
	l, err := wal.Open(dir, &opts)
	if err != nil {
		return nil, fmt.Errorf("raftstore: open stable store %s: %w", dir, err)
	}
	s := &stableStore{log: l, state: map[string][]byte{}}
	if last := l.LastIndex(); last >= l.FirstIndex() {
		rec, err := l.Read(last)
		if err == nil {
			s.state, err = decodeStable(rec)
		}
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("raftstore: stable store %s, record %d: %w", dir, last, err)
		}
	}
	return s, nil
}

// get returns a copy of the value under key, nil when there is none.
func (s *stableStore) get(key []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return nil, fmt.Errorf("raftstore: stable store get %q: %w", key, wal.ErrClosed)
	}
	v, ok := s.state[string(key)]
	if !ok {
		return nil, nil
	}
	return append([]byte{}, v...), nil
}

// set makes state[key] = val durable, then applies it in memory.
func (s *stableStore) set(key, val []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.state[string(key)]
	s.state[string(key)] = val
	s.buf = appendStable(s.buf[:0], s.state)
	if had {
		s.state[string(key)] = old
	} else {
		delete(s.state, string(key))
	}
	idx, err := s.log.Append(s.buf)
	if err != nil {
		return fmt.Errorf("raftstore: stable store set %q: %w", key, err)
	}
	s.state[string(key)] = append([]byte{}, val...)
	if idx-s.log.FirstIndex() >= compactStableEvery {
		// Every record holds the whole state: the ones before idx are
		// not needed. A failure here loses nothing; the next set retries.
		if err := s.log.TruncateFront(idx); err != nil {
			return fmt.Errorf("raftstore: stable store compaction (the value was stored): %w", err)
		}
	}
	return nil
}

func (s *stableStore) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shut = true
	return s.log.Close()
}

func appendStable(b []byte, state map[string][]byte) []byte {
	keys := make([]string, 0, len(state))
	for k := range state {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = append(b, stableVersion1)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(state[k])))
		b = append(b, state[k]...)
	}
	return b
}

// decodeStable decodes a version-1 state record. The values it returns
// are copies, not aliases of rec.
func decodeStable(rec []byte) (map[string][]byte, error) {
	if len(rec) < 1 {
		return nil, fmt.Errorf("%w: empty stable record", ErrCorrupt)
	}
	if rec[0] != stableVersion1 {
		return nil, fmt.Errorf("%w: stable record version %d (this code reads version %d)", ErrVersion, rec[0], stableVersion1)
	}
	d := decoder{b: rec, off: 1}
	n := d.uvarint("key count")
	if d.err == nil && n > uint64(len(rec)) { // every key takes at least two bytes
		d.fail("key count %d larger than the record", n)
	}
	state := make(map[string][]byte)
	var prev []byte
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.bytes("key")
		v := d.bytes("value")
		if d.err != nil {
			break
		}
		if i > 0 && bytes.Compare(prev, k) >= 0 {
			d.fail("keys out of order (%q after %q)", k, prev)
			break
		}
		prev = k
		state[string(k)] = append([]byte{}, v...)
	}
	if d.err == nil && d.off != len(rec) {
		d.fail("%d trailing bytes", len(rec)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return state, nil
}
