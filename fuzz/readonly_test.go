package fuzz_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/pmwal/wal"
	"github.com/pmwal/wal/fuzz"
)

// TestReadOnlyAfterCrash: after power failures at random moments, a
// read-only Open of the crashed storage changes none of its bytes, and
// shows exactly the records, and reports exactly the torn tail, that a
// writer's Open then keeps and drops. It runs on the simulator, a Media
// without private mappings, so the read-only path that copies files into
// memory is the one tested here.
func TestReadOnlyAfterCrash(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	const dir = "/db/wal"
	torn := 0
	for seed := uint64(1); seed <= 40; seed++ {
		sim := fuzz.New(seed, 99)
		opts := wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: sim}
		l, err := wal.Open(dir, &opts)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 1))
		sim.CrashAt(sim.Events() + 1 + rng.IntN(400))
		for i := 0; i < 120 && !sim.Crashed(); i++ {
			rec := bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(30000))
			if rng.IntN(4) == 0 {
				_, err = l.AppendBatch([][]byte{rec, rec[:len(rec)/2]})
			} else {
				_, err = l.Append(rec)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		img := sim.Image()
		if img == nil {
			continue
		}
		before := map[string][]byte{}
		for _, name := range img.Files() {
			before[name] = bytes.Clone(img.Bytes(name))
		}
		ro := opts
		ro.Media, ro.ReadOnly = img, true
		got, gotRep := readAll(t, dir, ro)
		for _, name := range img.Files() {
			if !bytes.Equal(before[name], img.Bytes(name)) {
				t.Fatalf("seed %d: read-only Open changed %s", seed, name)
			}
		}
		if len(img.Files()) != len(before) {
			t.Fatalf("seed %d: read-only Open changed the file list", seed)
		}
		w := opts
		w.Media = img
		want, wantRep := readAll(t, dir, w)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: read-only Open shows %d records, the writer keeps %d", seed, len(got), len(want))
		}
		if fmt.Sprint(gotRep.Dropped) != fmt.Sprint(wantRep.Dropped) || gotRep.TornTail != wantRep.TornTail {
			t.Fatalf("seed %d: read-only dropped %v, writer %v", seed, gotRep.Dropped, wantRep.Dropped)
		}
		if wantRep.TornTail {
			torn++
		}
	}
	if torn == 0 {
		t.Fatal("no crash left a torn tail: the test exercised nothing")
	}
}

func readAll(t *testing.T, dir string, o wal.Options) ([][]byte, wal.RecoveryReport) {
	t.Helper()
	l, err := wal.Open(dir, &o)
	if err != nil {
		t.Fatalf("Open(ReadOnly=%v): %v", o.ReadOnly, err)
	}
	defer l.Close()
	var recs [][]byte
	it := l.Records(l.FirstIndex())
	for _, rec := range it.All() {
		recs = append(recs, bytes.Clone(rec))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return recs, l.Recovery()
}
