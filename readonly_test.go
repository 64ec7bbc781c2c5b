package wal

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// roOutcome is what an Open showed: its error class, or the records and
// the recovery report.
type roOutcome struct {
	corrupt bool
	first   uint64
	records [][]byte
	report  RecoveryReport
}

// roOpenAll opens dir with o, reads every record and closes the log.
func roOpenAll(t *testing.T, dir string, o Options) roOutcome {
	t.Helper()
	l, err := Open(dir, &o)
	if errors.Is(err, ErrCorrupt) {
		return roOutcome{corrupt: true}
	}
	if err != nil {
		t.Fatalf("Open(%s, ReadOnly=%v): %v", dir, o.ReadOnly, err)
	}
	defer l.Close()
	out := roOutcome{first: l.FirstIndex(), report: l.Recovery()}
	it := l.Records(out.first)
	for _, rec := range it.All() {
		out.records = append(out.records, append([]byte(nil), rec...))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("Records: %v", err)
	}
	return out
}

// TestReadOnlySeesWhatAWriterWouldKeep damages logs in the ways recovery
// tells apart, and checks for each that a read-only Open changes no byte of
// any file, yet shows exactly what a writer's Open then keeps and reports
// exactly the byte ranges the writer then drops: with and without repair.
func TestReadOnlySeesWhatAWriterWouldKeep(t *testing.T) {
	rtEnv(t)
	type damage struct {
		name    string
		corrupt bool // Open without repair refuses it
		fn      func(t *testing.T, dir string, locs []rtRec)
	}
	last := func(locs []rtRec) rtRec { return locs[len(locs)-1] }
	cases := []damage{
		{"intact", false, func(*testing.T, string, []rtRec) {}},
		{"torn last record", false, func(t *testing.T, dir string, locs []rtRec) {
			rtDamageRecord(t, dir, last(locs), func(b []byte, r rtRec) { b[r.off+recHeaderSize+r.len/2] ^= 0x40 })
		}},
		{"record in a sealed segment", true, func(t *testing.T, dir string, locs []rtRec) {
			rtDamageRecord(t, dir, locs[5], func(b []byte, r rtRec) { b[r.off] ^= 1 })
		}},
		{"record beyond the in-flight bound", true, func(t *testing.T, dir string, locs []rtRec) {
			// Damage a record of the last segment that has more than the
			// bound of complete records after it.
			r := last(locs)
			for i := len(locs) - 1; i > 0 && locs[i].seq == r.seq && r.off-locs[i].off < 70000; i-- {
				r = locs[i]
			}
			rtDamageRecord(t, dir, r, func(b []byte, r rtRec) { b[r.off+20] ^= 4 })
		}},
		{"META gone", true, func(t *testing.T, dir string, _ []rtRec) {
			if err := os.Remove(filepath.Join(dir, metaName)); err != nil {
				t.Fatal(err)
			}
		}},
		{"second segment file gone", true, func(t *testing.T, dir string, locs []rtRec) {
			if err := os.Remove(rtSegPath(dir, locs[1].seq+1)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := rtDir(t)
			o := *rtOpts(false)
			o.InFlightBound = 64 << 10
			_, locs := rtBuild(t, dir, &o, rng, rtRepeat(150, 20011))
			if last(locs).seq < 3 {
				t.Fatalf("setup: want at least 3 segments, have %d", last(locs).seq)
			}
			c.fn(t, dir, locs)
			files := rtSnapshot(t, dir)
			for _, repair := range []bool{false, true} {
				o.RepairCorruption = repair
				ro := o
				ro.ReadOnly = true
				got := roOpenAll(t, dir, ro)
				rtSameFiles(t, dir, files, "read-only Open")

				wdir := rtMaterialize(t, files)
				want := roOpenAll(t, wdir, o)
				if want.corrupt != (c.corrupt && !repair) {
					t.Fatalf("repair=%v: writer's Open corrupt=%v, want %v", repair, want.corrupt, c.corrupt && !repair)
				}
				if got.corrupt != want.corrupt {
					t.Fatalf("repair=%v: read-only corrupt=%v, writer corrupt=%v", repair, got.corrupt, want.corrupt)
				}
				if got.corrupt {
					continue
				}
				if got.first != want.first || !reflect.DeepEqual(got.records, want.records) {
					t.Fatalf("repair=%v: read-only sees first %d and %d records, writer keeps first %d and %d",
						repair, got.first, len(got.records), want.first, len(want.records))
				}
				if len(want.records) == 0 {
					t.Fatalf("repair=%v: nothing kept", repair)
				}
				g, w := got.report, want.report
				if g.TornTail != w.TornTail || g.Repaired != w.Repaired || g.DroppedRecords != w.DroppedRecords || g.DroppedBytes != w.DroppedBytes {
					t.Fatalf("repair=%v: read-only report %+v, writer %+v", repair, g, w)
				}
				if len(g.Dropped) != len(w.Dropped) {
					t.Fatalf("repair=%v: read-only dropped %v, writer %v", repair, g.Dropped, w.Dropped)
				}
				for i := range g.Dropped {
					gd, wd := g.Dropped[i], w.Dropped[i]
					if filepath.Base(gd.File) != filepath.Base(wd.File) || gd.Offset != wd.Offset || gd.Length != wd.Length || gd.Why != wd.Why {
						t.Fatalf("repair=%v: dropped extent %d: read-only %+v, writer %+v", repair, i, gd, wd)
					}
				}
				var sum int64
				for _, d := range w.Dropped {
					if d.Why != "repair: META replaced" {
						sum += d.Length
					}
				}
				if sum != w.DroppedBytes || w.TornTail && sum == 0 {
					t.Fatalf("repair=%v: report %+v: dropped extents do not add up to DroppedBytes", repair, w)
				}
				// The writer really zeroed what it reported (a removed file
				// may be back as a fresh spare segment).
				for _, d := range w.Dropped {
					if d.Why == "repair: file removed" {
						continue
					}
					b, err := os.ReadFile(d.File)
					if errors.Is(err, fs.ErrNotExist) {
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					if d.Why != "repair: META replaced" && !rtAllZero(b[d.Offset:d.Offset+d.Length]) {
						t.Fatalf("dropped extent %+v is not zero after the writer's Open", d)
					}
					if rtAllZero(files[filepath.Base(d.File)][d.Offset : d.Offset+d.Length]) {
						t.Fatalf("dropped extent %+v was zero before: it dropped nothing", d)
					}
				}
			}
		})
	}
}

// TestReadOnlyRefusesChanges: every call that would change the log fails
// with ErrReadOnly and leaves the files as they were; reads work.
func TestReadOnlyRefusesChanges(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	want, _ := rtBuild(t, dir, rtOpts(false), rand.New(rand.NewPCG(1, 2)), rtRepeat(30, 100))
	files := rtSnapshot(t, dir)
	o := rtOpts(false)
	o.ReadOnly = true
	l := rtOpen(t, dir, o)
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Append: %v, want ErrReadOnly", err)
	}
	for _, batch := range [][][]byte{nil, {[]byte("a"), []byte("b")}} {
		if _, err := l.AppendBatch(batch); !errors.Is(err, ErrReadOnly) {
			t.Errorf("AppendBatch(%d records): %v, want ErrReadOnly", len(batch), err)
		}
	}
	if err := l.TruncateFront(5); !errors.Is(err, ErrReadOnly) {
		t.Errorf("TruncateFront: %v, want ErrReadOnly", err)
	}
	if err := l.TruncateBack(5); !errors.Is(err, ErrReadOnly) {
		t.Errorf("TruncateBack: %v, want ErrReadOnly", err)
	}
	if err := rtVerify(l, want, 30); err != nil {
		t.Error(err)
	}
	rtClose(t, l)
	rtSameFiles(t, dir, files, "read-only use")
}

// TestReadOnlyLocking: read-only users share the log with each other, and
// exclude a writer and are excluded by one, with ErrLocked either way.
func TestReadOnlyLocking(t *testing.T) {
	rtEnv(t)
	dir := rtDir(t)
	rtBuild(t, dir, rtOpts(false), rand.New(rand.NewPCG(3, 4)), rtRepeat(3, 10))
	ro := rtOpts(false)
	ro.ReadOnly = true

	w := rtOpen(t, dir, rtOpts(false))
	if _, err := Open(dir, ro); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only Open beside a writer: %v, want ErrLocked", err)
	}
	rtClose(t, w)

	r1 := rtOpen(t, dir, ro)
	r2 := rtOpen(t, dir, ro)
	if _, err := Open(dir, rtOpts(false)); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer Open beside readers: %v, want ErrLocked", err)
	}
	rtClose(t, r1)
	rtClose(t, r2)
	rtClose(t, rtOpen(t, dir, rtOpts(false)))
}

// TestReadOnlyNoLog: a missing directory, an empty one and a file are
// errors, and nothing is created.
func TestReadOnlyNoLog(t *testing.T) {
	rtEnv(t)
	base := rtDir(t)
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := rtOpts(false)
	o.ReadOnly = true
	for _, dir := range []string{filepath.Join(base, "missing"), empty, file} {
		l, err := Open(dir, o)
		if err == nil {
			l.Close()
			t.Fatalf("read-only Open(%s) succeeded", dir)
		}
		if dir != file && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("read-only Open(%s): %v, want fs.ErrNotExist", dir, err)
		}
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("read-only Open created %d files in an empty directory", len(ents))
	}
	if _, err := os.Stat(filepath.Join(base, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only Open created the missing directory")
	}
}
