package wal

import (
	"bytes"
	"errors"
	"testing"
)

// TestIteratorAfterTruncateBack: a loop over Records whose body (or another
// goroutine) truncates the log back and appends again must not go on into
// the new records as if they followed the ones it yielded. Like a Tailer,
// the iterator ends with ErrNotFound when the record it yielded last was
// removed; a cut that keeps it changes nothing, and neither does one
// before the first record is yielded.
func TestIteratorAfterTruncateBack(t *testing.T) {
	newRec := func(i uint64) []byte { return append([]byte("new-"), truncRec(i)...) }
	fill := func(t *testing.T) *Log {
		l := truncOpen(t, truncDir(t))
		t.Cleanup(func() { l.Close() })
		truncFill(t, l, 8)
		return l
	}
	// refill truncates back to keep and appends records until last.
	refill := func(t *testing.T, l *Log, keep, last uint64) {
		t.Helper()
		if err := l.TruncateBack(keep); err != nil {
			t.Fatal(err)
		}
		for i := keep + 1; i <= last; i++ {
			if _, err := l.Append(newRec(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name      string
		from      uint64 // the loop's start
		at        uint64 // the body cuts when it holds this index; 0: before the loop
		keep      uint64 // TruncateBack(keep), then appends to 10
		wantLast  uint64 // the last index yielded
		wantError bool   // the loop ends with ErrNotFound
	}{
		{"cut below the yielded record", 1, 4, 2, 4, true},
		{"cut at the record just before the yielded one", 1, 4, 3, 4, true},
		{"cut keeps the yielded record", 1, 4, 4, 10, false},
		{"cut keeps more", 1, 4, 6, 10, false},
		{"cut before the first step", 5, 0, 2, 10, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := fill(t)
			if c.at == 0 {
				refill(t, l, c.keep, 10)
			}
			it := l.Records(c.from)
			var last uint64
			for idx, rec := range it.All() {
				var want []byte
				if idx <= 8 && (c.at != 0 && idx <= c.at || idx <= c.keep) {
					want = truncRec(idx)
				} else {
					want = newRec(idx)
				}
				if !bytes.Equal(rec, want) {
					t.Fatalf("record %d is neither the one the log held when it was yielded", idx)
				}
				if idx != last+1 && last != 0 {
					t.Fatalf("yielded %d after %d", idx, last)
				}
				last = idx
				if idx == c.at {
					refill(t, l, c.keep, 10)
				}
			}
			err := it.Err()
			if c.wantError != errors.Is(err, ErrNotFound) || (!c.wantError && err != nil) {
				t.Fatalf("Err() = %v, want ErrNotFound %v", err, c.wantError)
			}
			if last != c.wantLast {
				t.Fatalf("the loop yielded up to %d, want %d", last, c.wantLast)
			}
		})
	}
}
