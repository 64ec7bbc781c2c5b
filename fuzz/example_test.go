package fuzz_test

import (
	"fmt"
	"log"

	"github.com/pmwal/wal"
	"github.com/pmwal/wal/fuzz"
)

// A crash test of the log, or of a database built on it: run a workload on
// simulated persistent memory, take a power failure at a chosen event,
// recover from what the media could hold, and check what was acknowledged.
func Example() {
	sim := fuzz.New(1, 2) // every random choice replays from this seed
	opts := &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistCacheFlush, Media: sim}
	l, err := wal.Open("/db/wal", opts)
	if err != nil {
		log.Fatal(err)
	}
	acked := 0
	sim.CrashAt(sim.Events() + 9) // power fails at the 9th flush, store or fence from now
	for i := 0; i < 10; i++ {
		if _, err := l.Append([]byte(fmt.Sprintf("txn %d", i))); err != nil {
			log.Fatal(err)
		}
		if !sim.Crashed() {
			acked++ // returned before the power failure: must survive it
		}
	}
	l.Close()

	opts.Media = sim.Image() // the storage after the power failure
	l, err = wal.Open("/db/wal", opts)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	fmt.Printf("some appends were acknowledged before the crash, some not: %v\n", acked > 0 && acked < 10)
	fmt.Printf("every acknowledged append survived: %v\n", l.LastIndex() >= uint64(acked))
	rec, _ := l.Read(1)
	fmt.Printf("first record: %s\n", rec)
	// Output:
	// some appends were acknowledged before the crash, some not: true
	// every acknowledged append survived: true
	// first record: txn 0
}
