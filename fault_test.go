package wal

import (
	"errors"
	"os"
	"testing"
)

// A segment file truncated by another program while the log has it mapped
// must turn reads and appends into errors, never crash the process.
func TestTruncatedFromOutside(t *testing.T) {
	dir := truncDir(t)
	l := truncOpen(t, dir)
	defer l.Close()
	truncFill(t, l, 12000) // segment 1 sealed, the log now in a later one
	sealed, active := l.segs[0], l.segs[len(l.segs)-1]
	if err := os.Truncate(sealed.path, 4096); err != nil {
		t.Fatal(err)
	}
	idx := sealed.first + uint64(sealed.offs.Len()) - 1 // far past the first 4 KiB
	if _, err := l.Read(idx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a record in a truncated file: %v", err)
	}
	it := l.Records(idx)
	for range it.All() {
		t.Fatal("iterated over a record in a truncated file")
	}
	if !errors.Is(it.Err(), ErrCorrupt) {
		t.Fatalf("iterator over a truncated file: %v", it.Err())
	}
	// Records outside the truncated file still read.
	if _, err := l.Read(active.first); err != nil {
		t.Fatalf("Read in an intact segment: %v", err)
	}
	// Appends into a truncated active segment fail, and the log refuses
	// further appends until reopened.
	if err := os.Truncate(active.path, 4096); err != nil {
		t.Fatal(err)
	}
	_, err := l.Append(make([]byte, 100))
	for i := 0; err == nil && i < 100000; i++ { // until an append lands past 4 KiB
		_, err = l.Append(make([]byte, 100))
	}
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFailed) {
		t.Fatalf("Append into a truncated file: %v", err)
	}
	if _, err := l.Append(nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after a fault: %v", err)
	}
}
