package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/pmwal/wal"
	tidwall "github.com/tidwall/wal"
)

// fillBatch is the records per call when building the prebuilt log.
const fillBatch = 1024

// readCheck is how many records a reader reads between deadline checks.
const readCheck = 1024

// ---- this log ----

// pmwalDriver opens this log with one persistence mode and segment size
// (0: the default, 64 MiB).
type pmwalDriver struct {
	persist wal.Persist
	segSize int64
}

func (d pmwalDriver) create(dir string) (store, error) { return d.open(dir) }

func (d pmwalDriver) open(dir string) (store, error) {
	l, err := wal.Open(dir, &wal.Options{Persist: d.persist, SegmentSize: d.segSize})
	if err != nil {
		return nil, fmt.Errorf("pmwal open %s: %w", dir, err)
	}
	if got := l.Persist(); got != d.persist {
		l.Close()
		return nil, fmt.Errorf("pmwal open %s: persistence is %v, asked for %v", dir, got, d.persist)
	}
	return &pmwalStore{l: l}, nil
}

type pmwalStore struct{ l *wal.Log }

func (s *pmwalStore) appendCalls(w *worker, n int) error {
	for range n {
		var t time.Time
		timed := w.sampled()
		if timed {
			t = time.Now()
		}
		var err error
		if w.batch == 1 {
			_, err = s.l.Append(w.buf)
		} else {
			_, err = s.l.AppendBatch(w.bufs)
		}
		if err != nil {
			return fmt.Errorf("pmwal append: %w", err)
		}
		if timed {
			w.hist.record(time.Since(t))
		}
	}
	return nil
}

func (s *pmwalStore) fill(total int64, size int) error {
	// Batches of up to 256 KiB fit in the smallest segment (1 MiB).
	batch := max(1, min(fillBatch, (256<<10)/size))
	w := newWorker(size, batch)
	for written := int64(0); written < total; written += int64(size * batch) {
		if _, err := s.l.AppendBatch(w.bufs); err != nil {
			return fmt.Errorf("pmwal fill: %w", err)
		}
	}
	return nil
}

func (s *pmwalStore) read(w *worker, deadline time.Time) (int64, error) {
	var n, sum int64
	var t time.Time
	for {
		it := s.l.Records(s.l.FirstIndex())
		for _, rec := range it.All() {
			// A sample spans one step of the iterator: from the body of
			// the sampled record to the body of the next.
			if !t.IsZero() {
				w.hist.record(time.Since(t))
				t = time.Time{}
			}
			sum += int64(rec[0]) + int64(len(rec))
			n++
			if w.sampled() {
				t = time.Now()
			}
			if n%readCheck == 0 && !time.Now().Before(deadline) {
				return n, nil
			}
		}
		if err := it.Err(); err != nil {
			return n, fmt.Errorf("pmwal read: %w", err)
		}
		t = time.Time{}
		if n == 0 {
			return 0, errors.New("pmwal read: empty log")
		}
		if sum < 0 { // keep sum live
			return n, nil
		}
	}
}

func (s *pmwalStore) close() error { return s.l.Close() }

// ---- hashicorp/raft-wal ----

// raftWALDriver opens hashicorp/raft-wal logs (fsync on every StoreLogs,
// which is the library's only mode).
type raftWALDriver struct{}

func (raftWALDriver) create(dir string) (store, error) { return raftWALDriver{}.open(dir) }

func (raftWALDriver) open(dir string) (store, error) {
	// raft-wal's Close leaves its bolt meta database open (and locked), so
	// the store passes its own and closes it.
	meta := &metadb.BoltMetaDB{}
	w, err := raftwal.Open(dir, raftwal.WithLogger(hclog.NewNullLogger()), raftwal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("raft-wal open %s: %w", dir, err)
	}
	last, err := w.LastIndex()
	if err != nil {
		w.Close()
		meta.Close()
		return nil, fmt.Errorf("raft-wal last index: %w", err)
	}
	return &raftWALStore{w: w, meta: meta, next: last + 1}, nil
}

// raftWALStore assigns indexes under a mutex: raft-wal needs them
// contiguous and leaves concurrency to the caller (raft batches itself).
type raftWALStore struct {
	w    *raftwal.WAL
	meta *metadb.BoltMetaDB
	mu   sync.Mutex
	next uint64
}

func (s *raftWALStore) appendCalls(w *worker, n int) error {
	logs := make([]raft.Log, w.batch)
	ptrs := make([]*raft.Log, w.batch)
	for i := range logs {
		logs[i].Data = w.buf
		logs[i].Term = 1
		logs[i].Type = raft.LogCommand
		ptrs[i] = &logs[i]
	}
	for range n {
		var t time.Time
		timed := w.sampled()
		if timed {
			t = time.Now()
		}
		s.mu.Lock()
		for i := range logs {
			logs[i].Index = s.next + uint64(i)
		}
		err := s.w.StoreLogs(ptrs)
		if err == nil {
			s.next += uint64(len(logs))
		}
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("raft-wal StoreLogs: %w", err)
		}
		if timed {
			w.hist.record(time.Since(t))
		}
	}
	return nil
}

func (s *raftWALStore) fill(total int64, size int) error {
	return fillByCalls(s.appendCalls, total, size)
}

func (s *raftWALStore) read(w *worker, deadline time.Time) (int64, error) {
	first, err := s.w.FirstIndex()
	if err != nil {
		return 0, fmt.Errorf("raft-wal first index: %w", err)
	}
	last, err := s.w.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("raft-wal last index: %w", err)
	}
	if last < first || last == 0 {
		return 0, errors.New("raft-wal read: empty log")
	}
	var n int64
	var rl raft.Log
	for idx := first; ; idx++ {
		if idx > last {
			idx = first
		}
		var t time.Time
		timed := w.sampled()
		if timed {
			t = time.Now()
		}
		if err := s.w.GetLog(idx, &rl); err != nil {
			return n, fmt.Errorf("raft-wal GetLog(%d): %w", idx, err)
		}
		if timed {
			w.hist.record(time.Since(t))
		}
		n++
		if n%readCheck == 0 && !time.Now().Before(deadline) {
			return n, nil
		}
	}
}

func (s *raftWALStore) close() error {
	err := s.w.Close()
	if merr := s.meta.Close(); err == nil && merr != nil {
		err = fmt.Errorf("raft-wal meta database: %w", merr)
	}
	return err
}

// ---- tidwall/wal ----

// tidwallDriver opens tidwall/wal logs with NoSync false (fsync on every
// Write and WriteBatch) and its other options at their defaults.
type tidwallDriver struct{}

func (tidwallDriver) create(dir string) (store, error) { return tidwallDriver{}.open(dir) }

func (tidwallDriver) open(dir string) (store, error) {
	opts := *tidwall.DefaultOptions
	opts.NoSync = false
	l, err := tidwall.Open(dir, &opts)
	if err != nil {
		return nil, fmt.Errorf("tidwall/wal open %s: %w", dir, err)
	}
	last, err := l.LastIndex()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("tidwall/wal last index: %w", err)
	}
	return &tidwallStore{l: l, next: last + 1}, nil
}

// tidwallStore assigns indexes under a mutex: tidwall/wal needs them
// contiguous.
type tidwallStore struct {
	l    *tidwall.Log
	mu   sync.Mutex
	next uint64
}

func (s *tidwallStore) appendCalls(w *worker, n int) error {
	var b tidwall.Batch
	for range n {
		var t time.Time
		timed := w.sampled()
		if timed {
			t = time.Now()
		}
		s.mu.Lock()
		var err error
		if w.batch == 1 {
			err = s.l.Write(s.next, w.buf)
		} else {
			b.Clear()
			for i := range w.batch {
				b.Write(s.next+uint64(i), w.buf)
			}
			err = s.l.WriteBatch(&b)
		}
		if err == nil {
			s.next += uint64(w.batch)
		}
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("tidwall/wal write: %w", err)
		}
		if timed {
			w.hist.record(time.Since(t))
		}
	}
	return nil
}

func (s *tidwallStore) fill(total int64, size int) error {
	return fillByCalls(s.appendCalls, total, size)
}

func (s *tidwallStore) read(w *worker, deadline time.Time) (int64, error) {
	first, err := s.l.FirstIndex()
	if err != nil {
		return 0, fmt.Errorf("tidwall/wal first index: %w", err)
	}
	last, err := s.l.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("tidwall/wal last index: %w", err)
	}
	if last < first || last == 0 {
		return 0, errors.New("tidwall/wal read: empty log")
	}
	var n int64
	for idx := first; ; idx++ {
		if idx > last {
			idx = first
		}
		var t time.Time
		timed := w.sampled()
		if timed {
			t = time.Now()
		}
		if _, err := s.l.Read(idx); err != nil {
			return n, fmt.Errorf("tidwall/wal Read(%d): %w", idx, err)
		}
		if timed {
			w.hist.record(time.Since(t))
		}
		n++
		if n%readCheck == 0 && !time.Now().Before(deadline) {
			return n, nil
		}
	}
}

func (s *tidwallStore) close() error { return s.l.Close() }

// fillByCalls writes about total bytes of size-byte records through a
// store's appendCalls, in untimed batches of fillBatch (the stores whose
// fill is just their append loop).
func fillByCalls(appendCalls func(*worker, int) error, total int64, size int) error {
	w := newWorker(size, fillBatch)
	w.measure = false
	return appendCalls(w, int((total+int64(size*fillBatch)-1)/int64(size*fillBatch)))
}
