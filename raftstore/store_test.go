package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pmwal/wal"
)

// testDir returns a fresh directory and the persistence mode for it: a
// directory under /dev/shm with PersistCacheFlush where tmpfs is there,
// else (or with RAFTSTORE_TEST_DISK=1 in the environment) t.TempDir()
// with PersistMsync.
func testDir(t testing.TB) (string, wal.Persist) {
	t.Helper()
	if os.Getenv("RAFTSTORE_TEST_DISK") == "1" {
		return t.TempDir(), wal.PersistMsync
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "raftstore-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir, wal.PersistCacheFlush
		}
	}
	return t.TempDir(), wal.PersistMsync
}

func testOpts(p wal.Persist) *wal.Options {
	return &wal.Options{SegmentSize: 1 << 20, Persist: p}
}

// openTest opens a Store in a fresh directory and closes it at cleanup.
func openTest(t *testing.T) (*Store, string, *wal.Options) {
	t.Helper()
	dir, p := testDir(t)
	opts := testOpts(p)
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir, opts
}

// entry builds a test entry whose fields all depend on index and term.
func entry(index, term uint64) *raft.Log {
	return &raft.Log{
		Index:      index,
		Term:       term,
		Type:       raft.LogCommand,
		Data:       fmt.Appendf(nil, "data-%d-%d", index, term),
		Extensions: fmt.Appendf(nil, "ext-%d", index),
		AppendedAt: time.Unix(1_700_000_000+int64(index), int64(index*1000+term)),
	}
}

func entries(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, entry(i, term))
	}
	return out
}

func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt) && a.AppendedAt.IsZero() == b.AppendedAt.IsZero()
}

// checkLogs asserts the store's bounds and that [first, last] holds the
// entries of want (by index) and nothing is found just outside.
func checkLogs(t *testing.T, ls raft.LogStore, first, last uint64, want map[uint64]*raft.Log) {
	t.Helper()
	if got, err := ls.FirstIndex(); err != nil || got != first {
		t.Fatalf("FirstIndex = %d, %v; want %d", got, err, first)
	}
	if got, err := ls.LastIndex(); err != nil || got != last {
		t.Fatalf("LastIndex = %d, %v; want %d", got, err, last)
	}
	if first != 0 {
		for i := first; i <= last; i++ {
			var l raft.Log
			if err := ls.GetLog(i, &l); err != nil {
				t.Fatalf("GetLog(%d): %v", i, err)
			}
			if w, ok := want[i]; ok && !sameLog(&l, w) {
				t.Fatalf("GetLog(%d) = %+v, want %+v", i, l, *w)
			}
		}
	}
	for _, i := range []uint64{0, first - 1, last + 1, last + 100} {
		if first != 0 && i >= first && i <= last {
			continue
		}
		var l raft.Log
		if err := ls.GetLog(i, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) outside %d..%d: %v, want raft.ErrLogNotFound", i, first, last, err)
		}
	}
}

func byIndex(logs ...[]*raft.Log) map[uint64]*raft.Log {
	m := map[uint64]*raft.Log{}
	for _, ls := range logs {
		for _, l := range ls {
			m[l.Index] = l
		}
	}
	return m
}

// errOutOfOrder checks err is an ErrOutOfOrder naming what. raft.LogCache
// flattens its store's errors into text, so through the cache only the
// text is checked.
func errOutOfOrder(t *testing.T, err error, cached bool, what string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error, want ErrOutOfOrder")
	}
	if !cached && !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("error %v is not ErrOutOfOrder", err)
	}
	if !strings.Contains(err.Error(), what) {
		t.Fatalf("error %q does not say %q", err, what)
	}
}

// TestLogStore runs each LogStore method, as raft's interface documents
// it, on the Store directly and behind raft.NewLogCache.
func TestLogStore(t *testing.T) {
	type tc struct {
		name string
		run  func(t *testing.T, ls raft.LogStore, cached bool)
	}
	cases := []tc{
		{"empty log: FirstIndex and LastIndex are 0, GetLog is ErrLogNotFound", func(t *testing.T, ls raft.LogStore, cached bool) {
			checkLogs(t, ls, 0, 0, nil)
		}},
		{"StoreLog then GetLog returns every field", func(t *testing.T, ls raft.LogStore, cached bool) {
			l := &raft.Log{Index: 1, Term: 3, Type: raft.LogConfiguration, Data: []byte{0, 1, 2, 255},
				Extensions: []byte("ext"), AppendedAt: time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC)}
			if err := ls.StoreLog(l); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 1, 1, byIndex([]*raft.Log{l}))
		}},
		{"StoreLog of an entry with no data, no extensions and zero AppendedAt", func(t *testing.T, ls raft.LogStore, cached bool) {
			l := &raft.Log{Index: 1, Term: 1, Type: raft.LogNoop}
			if err := ls.StoreLog(l); err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := ls.GetLog(1, &got); err != nil {
				t.Fatal(err)
			}
			if !sameLog(&got, l) || !got.AppendedAt.IsZero() {
				t.Fatalf("got %+v, want %+v", got, *l)
			}
		}},
		{"StoreLogs stores a batch", func(t *testing.T, ls raft.LogStore, cached bool) {
			b := entries(1, 64, 1)
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 1, 64, byIndex(b))
		}},
		{"StoreLogs of no entries does nothing", func(t *testing.T, ls raft.LogStore, cached bool) {
			if err := ls.StoreLogs(nil); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 0, 0, nil)
		}},
		{"StoreLog and StoreLogs continue the log", func(t *testing.T, ls raft.LogStore, cached bool) {
			a, b := entries(1, 10, 1), entries(11, 20, 2)
			if err := ls.StoreLogs(a); err != nil {
				t.Fatal(err)
			}
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			c := entry(21, 2)
			if err := ls.StoreLog(c); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 1, 21, byIndex(a, b, []*raft.Log{c}))
		}},
		{"the first entry of an empty log may have any index", func(t *testing.T, ls raft.LogStore, cached bool) {
			b := entries(1000, 1009, 5)
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 1000, 1009, byIndex(b))
		}},
		{"StoreLog with a gap is refused", func(t *testing.T, ls raft.LogStore, cached bool) {
			if err := ls.StoreLogs(entries(1, 5, 1)); err != nil {
				t.Fatal(err)
			}
			errOutOfOrder(t, ls.StoreLog(entry(7, 1)), cached, "gap: index 7 after last index 5 (want 6)")
			errOutOfOrder(t, ls.StoreLogs(entries(9, 12, 1)), cached, "gap")
			checkLogs(t, ls, 1, 5, nil)
		}},
		{"StoreLog of a stored index is refused", func(t *testing.T, ls raft.LogStore, cached bool) {
			b := entries(1, 5, 1)
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			errOutOfOrder(t, ls.StoreLog(entry(3, 2)), cached, "already stored")
			checkLogs(t, ls, 1, 5, byIndex(b))
		}},
		{"StoreLogs with indexes not consecutive stores nothing", func(t *testing.T, ls raft.LogStore, cached bool) {
			b := entries(1, 4, 1)
			b[2] = entry(9, 1)
			errOutOfOrder(t, ls.StoreLogs(b), cached, "batch entry 2 has index 9 after 2")
			checkLogs(t, ls, 0, 0, nil)
		}},
		{"StoreLogs with a nil entry stores nothing", func(t *testing.T, ls raft.LogStore, cached bool) {
			if err := ls.StoreLogs([]*raft.Log{entry(1, 1), nil}); err == nil {
				t.Fatal("no error")
			}
			checkLogs(t, ls, 0, 0, nil)
		}},
		{"index 0 is refused", func(t *testing.T, ls raft.LogStore, cached bool) {
			errOutOfOrder(t, ls.StoreLog(entry(0, 1)), cached, "below")
			checkLogs(t, ls, 0, 0, nil)
		}},
		{"DeleteRange of a prefix (compaction)", func(t *testing.T, ls raft.LogStore, cached bool) {
			b := entries(1, 10, 1)
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			if err := ls.DeleteRange(1, 4); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 5, 10, byIndex(b))
			if err := ls.DeleteRange(0, 6); err != nil { // starts below FirstIndex
				t.Fatal(err)
			}
			checkLogs(t, ls, 7, 10, byIndex(b))
			if err := ls.StoreLog(entry(11, 1)); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 7, 11, byIndex(b))
		}},
		{"DeleteRange of a suffix (conflict) and storing over it", func(t *testing.T, ls raft.LogStore, cached bool) {
			b := entries(1, 10, 1)
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			if err := ls.DeleteRange(7, 10); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 1, 6, byIndex(b))
			if err := ls.DeleteRange(5, math.MaxUint64); err != nil { // ends past LastIndex
				t.Fatal(err)
			}
			checkLogs(t, ls, 1, 4, byIndex(b))
			c := entries(5, 8, 2)
			if err := ls.StoreLogs(c); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 1, 8, byIndex(b[:4], c))
		}},
		{"DeleteRange of everything, then any later index", func(t *testing.T, ls raft.LogStore, cached bool) {
			if err := ls.StoreLogs(entries(1, 10, 1)); err != nil {
				t.Fatal(err)
			}
			if err := ls.DeleteRange(1, 10); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 0, 0, nil)
			c := entries(50, 52, 3)
			if err := ls.StoreLogs(c); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 50, 52, byIndex(c))
		}},
		{"DeleteRange of everything after a snapshot install, then a lower index", func(t *testing.T, ls raft.LogStore, cached bool) {
			// A follower with a long stale log installs a snapshot at 150
			// and then stores from 151, below its old last index.
			if err := ls.StoreLogs(entries(100, 200, 1)); err != nil {
				t.Fatal(err)
			}
			if err := ls.DeleteRange(0, math.MaxUint64); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 0, 0, nil)
			c := entries(151, 160, 4)
			if err := ls.StoreLogs(c); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 151, 160, byIndex(c))
		}},
		{"an empty log refuses an index below its first index", func(t *testing.T, ls raft.LogStore, cached bool) {
			if err := ls.StoreLogs(entries(10, 12, 1)); err != nil {
				t.Fatal(err)
			}
			if err := ls.DeleteRange(10, 12); err != nil {
				t.Fatal(err)
			}
			errOutOfOrder(t, ls.StoreLog(entry(5, 2)), cached, "below the empty log's first index 10")
			if err := ls.StoreLog(entry(10, 2)); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 10, 10, byIndex([]*raft.Log{entry(10, 2)}))
		}},
		{"DeleteRange inside the log is ErrRange and deletes nothing", func(t *testing.T, ls raft.LogStore, cached bool) {
			b := entries(1, 10, 1)
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			if err := ls.DeleteRange(3, 5); !errors.Is(err, ErrRange) {
				t.Fatalf("DeleteRange(3, 5) = %v, want ErrRange", err)
			}
			if err := ls.DeleteRange(6, 2); !errors.Is(err, ErrRange) {
				t.Fatalf("DeleteRange(6, 2) = %v, want ErrRange", err)
			}
			checkLogs(t, ls, 1, 10, byIndex(b))
		}},
		{"DeleteRange outside the stored entries does nothing", func(t *testing.T, ls raft.LogStore, cached bool) {
			if err := ls.DeleteRange(1, 100); err != nil { // empty log
				t.Fatal(err)
			}
			b := entries(20, 30, 1)
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			if err := ls.DeleteRange(1, 19); err != nil {
				t.Fatal(err)
			}
			if err := ls.DeleteRange(31, 40); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 20, 30, byIndex(b))
		}},
		{"large entries", func(t *testing.T, ls raft.LogStore, cached bool) {
			// 16 x 100 KiB does not fit one 1 MiB segment: the batch is
			// split and every entry is stored.
			var b []*raft.Log
			for i := uint64(1); i <= 16; i++ {
				l := entry(i, 1)
				l.Data = bytes.Repeat([]byte{byte(i)}, 100<<10)
				b = append(b, l)
			}
			if err := ls.StoreLogs(b); err != nil {
				t.Fatal(err)
			}
			checkLogs(t, ls, 1, 16, byIndex(b))
		}},
	}
	for _, c := range cases {
		for _, cached := range []bool{false, true} {
			name := c.name
			if cached {
				name += " (LogCache)"
			}
			t.Run(name, func(t *testing.T) {
				s, _, _ := openTest(t)
				var ls raft.LogStore = s
				if cached {
					lc, err := raft.NewLogCache(8, s)
					if err != nil {
						t.Fatal(err)
					}
					if !lc.IsMonotonic() {
						t.Fatal("LogCache does not pass IsMonotonic through")
					}
					ls = lc
				}
				c.run(t, ls, cached)
			})
		}
	}
}

// TestLogStoreReopen: what was stored, and the truncations, survive Close
// and Open.
func TestLogStoreReopen(t *testing.T) {
	s, dir, opts := openTest(t)
	b := entries(1, 100, 1)
	if err := s.StoreLogs(b); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 30); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkLogs(t, s, 31, 90, byIndex(b))
	if err := s.StoreLog(entry(91, 2)); err != nil {
		t.Fatal(err)
	}

	// An empty log keeps its numbering across a reopen.
	if err := s.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(entry(500, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(500, 500); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkLogs(t, s, 0, 0, nil)
	errOutOfOrder(t, s.StoreLog(entry(499, 3)), false, "below the empty log's first index 500")
}

func TestClosed(t *testing.T) {
	s, _, _ := openTest(t)
	if err := s.StoreLog(entry(1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("GetLog after Close: %v", err)
	}
	if err := s.StoreLog(entry(2, 1)); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("StoreLog after Close: %v", err)
	}
	if err := s.Set([]byte("k"), []byte("v")); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("Set after Close: %v", err)
	}
	if _, err := s.Get([]byte("k")); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if _, err := s.GetUint64([]byte("k")); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("GetUint64 after Close: %v", err)
	}
}

func TestOpenLocked(t *testing.T) {
	_, dir, opts := openTest(t)
	if _, err := Open(dir, opts); !errors.Is(err, wal.ErrLocked) {
		t.Fatalf("second Open: %v, want wal.ErrLocked", err)
	}
}

// TestStableStore runs each StableStore method as raft's interface
// documents it.
func TestStableStore(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, s raft.StableStore)
	}{
		{"Get of a missing key is an empty slice and no error", func(t *testing.T, s raft.StableStore) {
			v, err := s.Get([]byte("CurrentTerm"))
			if err != nil || v == nil || len(v) != 0 {
				t.Fatalf("Get = %q (nil %v), %v", v, v == nil, err)
			}
		}},
		{"GetUint64 of a missing key is 0 and no error", func(t *testing.T, s raft.StableStore) {
			if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 0 {
				t.Fatalf("GetUint64 = %d, %v", v, err)
			}
		}},
		{"Set then Get, and Set replaces", func(t *testing.T, s raft.StableStore) {
			k := []byte("LastVoteCand")
			for _, v := range [][]byte{[]byte("node-1"), []byte("node-22"), {0, 255, 0}, {}} {
				if err := s.Set(k, v); err != nil {
					t.Fatal(err)
				}
				got, err := s.Get(k)
				if err != nil || !bytes.Equal(got, v) {
					t.Fatalf("Get = %q, %v; want %q", got, err, v)
				}
			}
		}},
		{"SetUint64 then GetUint64", func(t *testing.T, s raft.StableStore) {
			for _, v := range []uint64{0, 1, 1 << 40, math.MaxUint64} {
				if err := s.SetUint64([]byte("CurrentTerm"), v); err != nil {
					t.Fatal(err)
				}
				if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got != v {
					t.Fatalf("GetUint64 = %d, %v; want %d", got, err, v)
				}
			}
		}},
		{"keys are independent, binary and empty keys work", func(t *testing.T, s raft.StableStore) {
			kv := map[string]string{"": "empty key", "a": "1", "a\x00": "2", "\xff\xfe": "3", "b": ""}
			for k, v := range kv {
				if err := s.Set([]byte(k), []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			for k, v := range kv {
				if got, err := s.Get([]byte(k)); err != nil || string(got) != v {
					t.Fatalf("Get(%q) = %q, %v; want %q", k, got, err, v)
				}
			}
		}},
		{"values are copied in and out", func(t *testing.T, s raft.StableStore) {
			v := []byte("abc")
			if err := s.Set([]byte("k"), v); err != nil {
				t.Fatal(err)
			}
			v[0] = 'X'
			got, _ := s.Get([]byte("k"))
			got[1] = 'Y'
			if again, _ := s.Get([]byte("k")); string(again) != "abc" {
				t.Fatalf("stored value changed to %q", again)
			}
		}},
		{"GetUint64 of a value that is not 8 bytes is ErrValue", func(t *testing.T, s raft.StableStore) {
			if err := s.Set([]byte("k"), []byte("abc")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetUint64([]byte("k")); !errors.Is(err, ErrValue) {
				t.Fatalf("GetUint64 = %v, want ErrValue", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _, _ := openTest(t)
			c.run(t, s)
		})
	}
}

// TestStableStoreReopen: every acknowledged Set survives a reopen, also
// after the stable log was compacted many times.
func TestStableStoreReopen(t *testing.T) {
	s, dir, opts := openTest(t)
	const n = 3*compactStableEvery + 7
	for i := uint64(1); i <= n; i++ {
		if err := s.SetUint64([]byte("CurrentTerm"), i); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			if err := s.Set([]byte("LastVoteCand"), fmt.Appendf(nil, "node-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if first := s.stable.log.FirstIndex(); first <= compactStableEvery {
		t.Fatalf("stable log not compacted: first index %d", first)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != n {
		t.Fatalf("CurrentTerm = %d, %v; want %d", v, err, n)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-3000" {
		t.Fatalf("LastVoteCand = %q, %v", v, err)
	}
}

// appendRaw closes s and appends raw records to its wal dir/sub.
func appendRaw(t *testing.T, s *Store, dir, sub string, opts *wal.Options, recs ...[]byte) {
	t.Helper()
	s.Close()
	o := *opts
	if sub == "stable" {
		o.SegmentSize = stableSegmentSize
	}
	l, err := wal.Open(filepath.Join(dir, sub), &o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptRecords: records the wal holds intact but that do not decode
// give errors, never a panic or a wrong entry.
func TestCorruptRecords(t *testing.T) {
	s, dir, opts := openTest(t)
	if err := s.StoreLogs(entries(1, 2, 1)); err != nil {
		t.Fatal(err)
	}
	good := appendLog(nil, entry(6, 1))
	appendRaw(t, s, dir, "log", opts,
		appendLog(nil, entry(3, 1))[:5], // 3: short
		append([]byte{9}, good[1:]...),  // 4: version 9
		appendLog(nil, entry(99, 1)),    // 5: another index
		good,                            // 6: fine
	)
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		index uint64
		want  error
	}{{1, nil}, {3, ErrCorrupt}, {4, ErrVersion}, {5, ErrCorrupt}, {6, nil}} {
		l := raft.Log{Index: 12345}
		err := s.GetLog(c.index, &l)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("GetLog(%d) = %v, want %v", c.index, err, c.want)
		}
		if err != nil && l.Index != 12345 {
			t.Errorf("GetLog(%d) changed the entry on error", c.index)
		}
	}
}

func TestCorruptStableRecord(t *testing.T) {
	for _, c := range []struct {
		rec  []byte
		want error
	}{
		{[]byte{}, ErrCorrupt},
		{[]byte{1, 1, 3, 'a'}, ErrCorrupt},
		{[]byte{2, 0}, ErrVersion},
	} {
		s, dir, opts := openTest(t)
		if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
			t.Fatal(err)
		}
		appendRaw(t, s, dir, "stable", opts, c.rec)
		if s, err := Open(dir, opts); !errors.Is(err, c.want) {
			if err == nil {
				s.Close()
			}
			t.Errorf("Open with stable record %x: %v, want %v", c.rec, err, c.want)
		}
	}
}

func TestDecodeLog(t *testing.T) {
	roundTrip := []*raft.Log{
		entry(1, 1),
		{},
		{Index: math.MaxUint64, Term: math.MaxUint64, Type: 255},
		{Index: 5, AppendedAt: time.Unix(-1, 1)},
		{Index: 6, AppendedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{Index: 7, AppendedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)}, // not IsZero
		{Index: 8, Data: bytes.Repeat([]byte{1}, 300), Extensions: []byte{0}},
	}
	for _, l := range roundTrip {
		rec := appendLog(nil, l)
		if len(rec) > encodedLogSize(l) {
			t.Errorf("encoding of %+v is %d bytes, bound %d", *l, len(rec), encodedLogSize(l))
		}
		var got raft.Log
		if err := decodeLog(rec, &got); err != nil {
			t.Fatalf("decode %+v: %v", *l, err)
		}
		if !sameLog(&got, l) {
			t.Errorf("round trip of %+v gave %+v", *l, got)
		}
		// Every proper prefix is an error, never a panic.
		for n := 0; n < len(rec); n++ {
			if err := decodeLog(rec[:n], &got); !errors.Is(err, ErrCorrupt) {
				t.Errorf("decode of %d of %d bytes: %v, want ErrCorrupt", n, len(rec), err)
			}
		}
		if err := decodeLog(append(rec, 0), &got); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode with a trailing byte: %v", err)
		}
	}

	bad := []struct {
		name string
		rec  []byte
		want error
	}{
		{"version 0", []byte{0, 0, 0, 1, 1, 0, 0}, ErrVersion},
		{"version 2", []byte{2, 0, 0, 1, 1, 0, 0}, ErrVersion},
		{"unknown flag", []byte{1, 0, 2, 1, 1, 0, 0}, ErrCorrupt},
		{"nanoseconds out of range", append([]byte{1, 0, 1, 1, 1, 0}, binary10e9()...), ErrCorrupt},
		{"data length past the end", []byte{1, 0, 0, 1, 1, 5, 1, 2}, ErrCorrupt},
		{"huge data length", []byte{1, 0, 0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, ErrCorrupt},
		{"varint overflow", []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0, 0}, ErrCorrupt},
	}
	for _, c := range bad {
		var l raft.Log
		if err := decodeLog(c.rec, &l); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// binary10e9 is the uvarint of 1e9 followed by empty data and extensions.
func binary10e9() []byte {
	return append(binary.AppendUvarint(nil, 1e9), 0, 0)
}

func TestDecodeStable(t *testing.T) {
	state := map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 9}, "LastVoteCand": []byte("n1"), "": {}}
	rec := appendStable(nil, state)
	got, err := decodeStable(rec)
	if err != nil || len(got) != len(state) {
		t.Fatalf("decode: %v, %v", got, err)
	}
	for k, v := range state {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("%q = %q, want %q", k, got[k], v)
		}
	}
	for n := 0; n < len(rec); n++ {
		if _, err := decodeStable(rec[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode of %d of %d bytes: %v", n, len(rec), err)
		}
	}
	// Keys out of order or repeated.
	for _, rec := range [][]byte{
		{1, 2, 1, 'b', 0, 1, 'a', 0},
		{1, 2, 1, 'a', 0, 1, 'a', 0},
		{1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := decodeStable(rec); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode %x: %v, want ErrCorrupt", rec, err)
		}
	}
}

// FuzzDecodeLog: no input makes decodeLog panic, and what decodes
// re-encodes to an entry that decodes the same.
func FuzzDecodeLog(f *testing.F) {
	f.Add(appendLog(nil, entry(1, 1)))
	f.Add(appendLog(nil, &raft.Log{}))
	f.Add([]byte{1, 0, 1, 0x80})
	f.Fuzz(func(t *testing.T, rec []byte) {
		var l raft.Log
		if decodeLog(rec, &l) != nil {
			return
		}
		var again raft.Log
		if err := decodeLog(appendLog(nil, &l), &again); err != nil || !sameLog(&l, &again) {
			t.Fatalf("re-encoding %+v: %+v, %v", l, again, err)
		}
	})
}
