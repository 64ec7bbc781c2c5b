// Package raftstore implements github.com/hashicorp/raft's LogStore and
// StableStore on a pmwal write-ahead log (github.com/pmwal/wal).
//
// A Store keeps raft's log in one wal.Log, one record per raft.Log at the
// wal index equal to the raft index, and the stable store (current term,
// last vote and any other key raft sets) in a second, small wal.Log that
// holds the whole key/value state in each record. Both are durable when a
// method returns. It lives in a module of its own so that the core module
// keeps its two dependencies.
//
// README.md in this directory gives the record encoding byte by byte, the
// stable store's durability argument and benchmark numbers.
package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/pmwal/wal"
)

// Errors returned by a Store, wrapped with context; test for them with
// errors.Is. Errors of the underlying log (wal.ErrClosed, wal.ErrFailed,
// wal.ErrTooLarge, ...) are passed through wrapped as well. GetLog returns
// raft.ErrLogNotFound, unwrapped, for an index that is not stored.
var (
	// ErrCorrupt: a stored record does not decode (short, trailing bytes,
	// a bad varint or length, unknown flags), or holds another index than
	// the one it is stored at.
	ErrCorrupt = errors.New("raftstore: corrupt record")
	// ErrVersion: a stored record has an encoding version this code does
	// not know (written by a newer version of this package).
	ErrVersion = errors.New("raftstore: unknown record version")
	// ErrOutOfOrder: StoreLog or StoreLogs was given an index other than
	// the log's next one (a gap or a rewrite of stored entries; raft
	// deletes conflicting entries with DeleteRange first), indexes that
	// are not consecutive within the batch, or, on an empty log, an index
	// below the log's first index. Nothing was stored.
	ErrOutOfOrder = errors.New("raftstore: log index out of order")
	// ErrRange: DeleteRange was asked for a range with min > max, or one
	// that lies strictly inside the log (neither a prefix nor a suffix),
	// which raft never asks for. Nothing was deleted.
	ErrRange = errors.New("raftstore: unsupported delete range")
	// ErrValue: GetUint64 found a value that is not 8 bytes long (it was
	// stored with Set, not SetUint64).
	ErrValue = errors.New("raftstore: value is not a uint64")
)

// Store is a raft.LogStore, raft.MonotonicLogStore and raft.StableStore on
// two pmwal logs in one directory. All methods are safe for concurrent use.
type Store struct {
	log    *wal.Log
	stable *stableStore

	// mu serialises the writers (StoreLogs, DeleteRange): each checks the
	// log's indexes and then changes the log. Readers go to the log.
	mu     sync.Mutex
	buf    []byte   // encoding buffer, under mu
	recs   [][]byte // slices of buf, under mu
	closed bool     // under mu
}

// Interfaces a Store implements.
var (
	_ raft.LogStore          = (*Store)(nil)
	_ raft.MonotonicLogStore = (*Store)(nil)
	_ raft.StableStore       = (*Store)(nil)
)

// Open opens (creating if needed) the store in dir: raft's log in dir/log
// and the stable store in dir/stable, each a wal.Log opened with opts (nil
// for the defaults). The stable store always uses 1 MiB segments; the
// other options apply to both. Close the Store when done.
func Open(dir string, opts *wal.Options) (*Store, error) {
	var o wal.Options
	if opts != nil {
		o = *opts
	}
	// wal.Open creates dir too, durably.
	l, err := wal.Open(filepath.Join(dir, "log"), &o)
	if err != nil {
		return nil, fmt.Errorf("raftstore: open log in %s: %w", dir, err)
	}
	st, err := openStable(filepath.Join(dir, "stable"), o)
	if err != nil {
		l.Close()
		return nil, err
	}
	return &Store{log: l, stable: st}, nil
}

// Close closes both logs. Methods called after Close fail with an error
// wrapping wal.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return errors.Join(s.log.Close(), s.stable.close())
}

// Log returns the wal.Log that holds raft's entries, for inspection
// (Stats, Persist, Recovery). Changing it behind the Store's back breaks
// the Store.
func (s *Store) Log() *wal.Log { return s.log }

// IsMonotonic reports true: the store cannot hold a gap between indexes,
// so raft removes all entries with DeleteRange after restoring a snapshot
// instead of relying on a gap (raft.MonotonicLogStore).
func (s *Store) IsMonotonic() bool { return true }

// bounds returns the log's first and last index, or 0, 0 when it is
// empty (s.mu held: a writer changes them in more than one step, as when
// the first entry of an empty store is stored at N: the log's first index
// moves to N, then N is appended).
func (s *Store) bounds() (first, last uint64, err error) {
	if s.closed {
		return 0, 0, fmt.Errorf("raftstore: %w", wal.ErrClosed)
	}
	first, last = s.log.FirstIndex(), s.log.LastIndex()
	if last < first {
		return 0, 0, nil
	}
	return first, last, nil
}

// FirstIndex returns the index of the first stored entry, 0 when there is
// none.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, _, err := s.bounds()
	return first, err
}

// LastIndex returns the index of the last stored entry, 0 when there is
// none.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, last, err := s.bounds()
	return last, err
}

// GetLog reads the entry at index into log. An index that is not stored
// gives raft.ErrLogNotFound; a record that does not decode gives an error
// wrapping ErrCorrupt or ErrVersion, and log is left unchanged.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	rec, err := s.log.Read(index)
	if errors.Is(err, wal.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: get log %d: %w", index, err)
	}
	var l raft.Log
	if err := decodeLog(rec, &l); err != nil {
		return fmt.Errorf("raftstore: get log %d: %w", index, err)
	}
	if l.Index != index {
		return fmt.Errorf("raftstore: get log %d: %w: the record holds index %d", index, ErrCorrupt, l.Index)
	}
	*log = l
	return nil
}

// StoreLog stores one entry. Its index must be the log's next index
// (LastIndex()+1), or, on an empty log, any index at or above the log's
// first index; otherwise it returns an error wrapping ErrOutOfOrder that
// names the gap.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries with consecutive indexes, the first of which
// follows the same rule as StoreLog's, as one wal.AppendBatch: one persist
// for the batch, and after a crash the batch is there whole or not at all.
// A batch too large for one segment is split into batches that fit, each
// stored as above.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return fmt.Errorf("raftstore: %w", wal.ErrClosed)
		}
		return nil
	}
	for i, l := range logs {
		if l == nil {
			return fmt.Errorf("raftstore: store logs: entry %d of %d is nil", i, len(logs))
		}
		if i > 0 && l.Index != logs[i-1].Index+1 {
			return fmt.Errorf("%w: batch entry %d has index %d after %d", ErrOutOfOrder, i, l.Index, logs[i-1].Index)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("raftstore: %w", wal.ErrClosed)
	}
	first, last := s.log.FirstIndex(), s.log.LastIndex()
	idx := logs[0].Index
	if last >= first {
		if idx > last+1 {
			return fmt.Errorf("%w: gap: index %d after last index %d (want %d)", ErrOutOfOrder, idx, last, last+1)
		}
		if idx <= last {
			return fmt.Errorf("%w: index %d is already stored (last index %d, want %d; delete the conflicting entries first)", ErrOutOfOrder, idx, last, last+1)
		}
	} else if idx < first {
		return fmt.Errorf("%w: index %d below the empty log's first index %d", ErrOutOfOrder, idx, first)
	} else if idx > first {
		// Empty log: numbering continues at idx.
		if err := s.log.TruncateFront(idx); err != nil {
			return fmt.Errorf("raftstore: start the log at index %d: %w", idx, err)
		}
	}
	return s.appendLocked(logs)
}

func (s *Store) appendLocked(logs []*raft.Log) error {
	size := 0
	for _, l := range logs {
		size += encodedLogSize(l)
	}
	if cap(s.buf) < size {
		s.buf = make([]byte, 0, size)
	}
	b := s.buf[:0]
	s.recs = s.recs[:0]
	for _, l := range logs {
		start := len(b)
		b = appendLog(b, l)
		s.recs = append(s.recs, b[start:len(b):len(b)])
	}
	got, err := s.log.AppendBatch(s.recs)
	if errors.Is(err, wal.ErrTooLarge) && len(logs) > 1 {
		// Nothing was written; store the halves in order.
		half := len(logs) / 2
		if err := s.appendLocked(logs[:half]); err != nil {
			return err
		}
		return s.appendLocked(logs[half:])
	}
	if err != nil {
		return fmt.Errorf("raftstore: store logs %d..%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
	}
	if got != logs[0].Index {
		// Cannot happen while the Store is the log's only writer.
		return fmt.Errorf("%w: stored index %d at log index %d", ErrOutOfOrder, logs[0].Index, got)
	}
	return nil
}

// DeleteRange deletes the entries min through max, inclusive. The part of
// the range that holds entries must be a prefix of the log (TruncateFront),
// a suffix (TruncateBack) or the whole log; a range strictly inside the
// log gives ErrRange, as does min > max. A range that holds no entry
// changes nothing.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return fmt.Errorf("%w: min %d > max %d", ErrRange, min, max)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last, err := s.bounds()
	if err != nil {
		return err
	}
	if last == 0 || max < first || min > last {
		return nil
	}
	lo, hi := min, max
	if lo < first {
		lo = first
	}
	if hi > last {
		hi = last
	}
	switch {
	case lo == first && hi == last:
		// Everything: empty the log and keep its first index, so that
		// raft may store any index from there on (after a snapshot install
		// the next one can be below last).
		err = s.log.TruncateBack(first - 1)
	case lo == first:
		err = s.log.TruncateFront(hi + 1)
	case hi == last:
		err = s.log.TruncateBack(lo - 1)
	default:
		return fmt.Errorf("%w: %d..%d lies inside the log %d..%d", ErrRange, min, max, first, last)
	}
	if err != nil {
		return fmt.Errorf("raftstore: delete range %d..%d: %w", min, max, err)
	}
	return nil
}

// Set stores val under key durably and atomically, replacing any value.
func (s *Store) Set(key, val []byte) error {
	return s.stable.set(key, val)
}

// Get returns a copy of the value stored under key, or an empty slice and
// no error when the key was never set.
func (s *Store) Get(key []byte) ([]byte, error) {
	v, err := s.stable.get(key)
	if v == nil && err == nil {
		v = []byte{}
	}
	return v, err
}

// SetUint64 stores val under key as 8 big-endian bytes.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.stable.set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value SetUint64 stored under key, or 0 and no
// error when the key was never set. A value of another length than 8
// bytes gives ErrValue.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.stable.get(key)
	if err != nil || v == nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: key %q holds %d bytes", ErrValue, key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
