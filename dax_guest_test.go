package wal

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Tests that need a DAX filesystem. test/dax/run runs the test binary in a
// Linux guest with ext4 mounted -o dax on an emulated NVDIMM, with TMPDIR
// there and PMWAL_DAX_GUEST=1, which makes these tests mandatory: they fail
// instead of skipping when the temporary directory is not DAX. Elsewhere
// they skip. Helpers are prefixed dax.

// daxDir returns a temporary directory on a filesystem that accepts
// MAP_SHARED_VALIDATE|MAP_SYNC, or skips (fails in the DAX guest).
func daxDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := daxProbe(dir)
	if err == nil {
		return dir
	}
	if os.Getenv("PMWAL_DAX_GUEST") == "1" {
		t.Fatalf("PMWAL_DAX_GUEST=1 but %s does not take MAP_SYNC: %v", dir, err)
	}
	t.Skipf("not a DAX filesystem (%v); test/dax/run runs this test in a guest that has one", err)
	return ""
}

func daxProbe(dir string) error {
	f, err := os.CreateTemp(dir, "probe-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Truncate(int64(pageSize)); err != nil {
		return err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(pageSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED_VALIDATE|unix.MAP_SYNC)
	if err != nil {
		return err
	}
	return unix.Munmap(mem)
}

// TestDAXPersistAuto: on DAX, PersistAuto maps with MAP_SYNC and reports
// PersistDAX, PersistDAX opens, appends flush and fence without a single
// msync, and everything reads back after reopening in either mode.
func TestDAXPersistAuto(t *testing.T) {
	dir := daxDir(t)
	t.Setenv("WAL_PERSIST", "")
	var want [][]byte
	for round, mode := range []Persist{PersistAuto, PersistDAX, PersistAuto} {
		l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: mode})
		if err != nil {
			t.Fatalf("round %d: Open with %v: %v", round, mode, err)
		}
		if got := l.Persist(); got != PersistDAX {
			l.Close()
			t.Fatalf("round %d: Open with %v on DAX: Persist() = %v, want dax", round, mode, got)
		}
		for i, b := range want {
			got, err := l.Read(uint64(i + 1))
			if err != nil || string(got) != string(b) {
				t.Fatalf("round %d: Read(%d) = %q, %v; want %q", round, i+1, got, err, b)
			}
		}
		// Enough to roll over into new segments: each is created, zeroed,
		// renamed and mapped with MAP_SYNC.
		for i := 0; i < 300; i++ {
			b := make([]byte, 100+i*37)
			for j := range b {
				b[j] = byte(round*31 + i + j)
			}
			if _, err := l.Append(b); err != nil {
				t.Fatalf("round %d: Append: %v", round, err)
			}
			want = append(want, b)
		}
		batch := [][]byte{[]byte("a"), {}, make([]byte, 5000)}
		if _, err := l.AppendBatch(batch); err != nil {
			t.Fatalf("round %d: AppendBatch: %v", round, err)
		}
		want = append(want, batch...)
		s := l.Stats()
		if s.Persist != PersistDAX || s.Syncs != 0 || s.Fences == 0 {
			t.Errorf("round %d: Stats: Persist %v, %d msyncs, %d fences; want dax, no msync, fences", round, s.Persist, s.Syncs, s.Fences)
		}
		if s.Segments < 2 {
			t.Errorf("round %d: %d segments, want a rollover", round, s.Segments)
		}
		t.Logf("round %d: %v → %v, %d segments, %d fences, %d lines flushed, flush %q, eADR %v", round, mode, s.Persist, s.Segments, s.Fences, s.FlushedLines, s.Hardware.Flush, s.Hardware.EADR)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// WAL_PERSIST=msync overrides a DAX-capable mapping: the fallback path
	// runs on the same files.
	t.Setenv("WAL_PERSIST", "msync")
	l, err := Open(dir, &Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Persist() != PersistMsync {
		t.Fatalf("WAL_PERSIST=msync on DAX: Persist() = %v", l.Persist())
	}
	if got := l.LastIndex(); got != uint64(len(want)) {
		t.Fatalf("LastIndex() = %d, want %d", got, len(want))
	}
}

// TestDAXPersistDAXOnFreshLog: PersistDAX on a directory with no segment
// yet decides with the first new one, and says so.
func TestDAXPersistDAXOnFreshLog(t *testing.T) {
	dir := filepath.Join(daxDir(t), "new", "log")
	t.Setenv("WAL_PERSIST", "dax")
	l, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open with WAL_PERSIST=dax on DAX: %v", err)
	}
	defer l.Close()
	if l.Persist() != PersistDAX {
		t.Fatalf("Persist() = %v", l.Persist())
	}
	if _, err := l.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestDAXKill runs the process-kill loop of kill_test.go with PersistDAX:
// a child appends from several goroutines through MAP_SYNC mappings, is
// killed with SIGKILL, and the parent checks the oracle.
func TestDAXKill(t *testing.T) {
	dir := daxDir(t)
	kills := 30
	if testing.Short() {
		kills = 12
	}
	killRun(t, PersistDAX, dir, kills)
}
