package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestRecordsIterator(t *testing.T) {
	dir := truncDir(t)
	l := truncOpen(t, dir)
	defer l.Close()
	truncFill(t, l, 12000) // several segments
	if err := l.TruncateFront(100); err != nil {
		t.Fatal(err)
	}
	it := l.Records(l.FirstIndex())
	want := uint64(100)
	for idx, rec := range it.All() {
		if idx != want || !bytes.Equal(rec, truncRec(idx)) {
			t.Fatalf("record %d (want index %d) differs", idx, want)
		}
		want++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if want != 12001 {
		t.Fatalf("iteration ended at %d", want)
	}
	// Early break, then resume where it stopped.
	it = l.Records(5000)
	for idx := range it.All() {
		if idx == 5009 {
			break
		}
	}
	n := 0
	for idx := range it.All() {
		if n == 0 && idx != 5010 {
			t.Fatalf("resumed at %d", idx)
		}
		n++
	}
	if n != 12000-5010+1 {
		t.Fatalf("resumed iteration yielded %d records", n)
	}
	// From below the first index: ErrNotFound through Err.
	it = l.Records(1)
	for range it.All() {
		t.Fatal("yielded a truncated record")
	}
	if !errors.Is(it.Err(), ErrNotFound) {
		t.Fatalf("Err() = %v", it.Err())
	}
}

// Several tailing readers follow concurrent appenders; every reader sees
// every record, in order, exactly once, and a cancelled context or Close
// ends a wait.
func TestTailers(t *testing.T) {
	l := truncOpen(t, truncDir(t))
	const total, readers = 3000, 4
	var wg sync.WaitGroup
	errs := make(chan error, readers+2)
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tl := l.Tail(1)
			var buf []byte
			for want := uint64(1); want <= total; want++ {
				idx, rec, err := tl.Next(context.Background(), buf)
				if err != nil {
					errs <- err
					return
				}
				if idx != want || !bytes.Equal(rec, []byte(fmt.Sprint(idx))) {
					errs <- fmt.Errorf("reader got %d %q, want %d", idx, rec, want)
					return
				}
				buf = rec
			}
		}()
	}
	// One appender writes the index as the payload, so readers can check.
	go func() {
		for i := uint64(1); i <= total; i++ {
			if _, err := l.Append([]byte(fmt.Sprint(i))); err != nil {
				errs <- err
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(60 * time.Second):
		t.Fatal("tailing readers did not finish")
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	// A wait ends with its context...
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := l.Tail(total+1).Next(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past the end with a deadline: %v", err)
	}
	// ...and with Close.
	got := make(chan error, 1)
	go func() {
		_, _, err := l.Tail(total+1).Next(context.Background(), nil)
		got <- err
	}()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Next across Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake a waiting tailer")
	}
}

func TestStats(t *testing.T) {
	l := truncOpen(t, truncDir(t))
	defer l.Close()
	for i := 0; i < 10; i++ {
		if _, err := l.Append(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.AppendBatch([][]byte{make([]byte, 10), make([]byte, 20)}); err != nil {
		t.Fatal(err)
	}
	s := l.Stats()
	if s.Appends != 11 || s.Records != 12 || s.Bytes != 1030 {
		t.Fatalf("counters: %+v", s)
	}
	if s.FirstIndex != 1 || s.LastIndex != 12 || s.Segments != 1 || s.Persist != PersistCacheFlush {
		t.Fatalf("state: %+v", s)
	}
	if wantUsed := int64(10*recSize(100) + recSize(10) + recSize(20)); s.BytesUsed != wantUsed {
		t.Fatalf("BytesUsed %d, want %d", s.BytesUsed, wantUsed)
	}
	if s.BytesFree != int64(1<<20-segHeaderSize)-s.BytesUsed {
		t.Fatalf("BytesFree %d", s.BytesFree)
	}
	if s.Fences != 11 || s.Hardware.Flush == "" {
		t.Fatalf("fences %d, hardware %+v", s.Fences, s.Hardware)
	}
}

// A slice borrowed in a Records loop stays readable while the loop body
// truncates its segment away and even closes the log.
func TestRecordsPinsSegment(t *testing.T) {
	l := truncOpen(t, truncDir(t))
	truncFill(t, l, 12000)
	it := l.Records(1)
	for idx, rec := range it.All() {
		if err := l.TruncateFront(11000); err != nil { // removes segment 1's file
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if idx != 1 || !bytes.Equal(rec, truncRec(1)) {
			t.Fatalf("borrowed record %d changed under truncation and Close", idx)
		}
		break
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
}

// A tailer whose returned records a TruncateBack removes must not carry on
// at the replaced indexes as if nothing happened: its last record gone,
// or replaced by a new one, gives ErrNotFound. One whose records are all
// kept follows the new records.
func TestTailerAfterTruncateBack(t *testing.T) {
	ctx := context.Background()
	appendN := func(t *testing.T, l *Log, from, to uint64, tag string) {
		t.Helper()
		for i := from; i <= to; i++ {
			if idx, err := l.Append([]byte(fmt.Sprint(tag, i))); err != nil || idx != i {
				t.Fatalf("Append = %d, %v, want %d", idx, err, i)
			}
		}
	}
	readTo := func(t *testing.T, tl *Tailer, to uint64) {
		t.Helper()
		for {
			idx, _, err := tl.Next(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if idx == to {
				return
			}
		}
	}
	// A tailer that has returned records 1..read of 10, then TruncateBack(cut).
	setup := func(t *testing.T, read, cut uint64) (*Log, *Tailer) {
		t.Helper()
		l := truncOpen(t, truncDir(t))
		t.Cleanup(func() { l.Close() })
		appendN(t, l, 1, 10, "old")
		tl := l.Tail(1)
		readTo(t, tl, read)
		if err := l.TruncateBack(cut); err != nil {
			t.Fatal(err)
		}
		return l, tl
	}
	t.Run("last record removed", func(t *testing.T) {
		_, tl := setup(t, 10, 5)
		// Nothing appended since: it must not wait for index 11.
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if idx, rec, err := tl.Next(c, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Next = %d %q, %v; want ErrNotFound", idx, rec, err)
		}
	})
	t.Run("last record replaced", func(t *testing.T) {
		l, tl := setup(t, 10, 5)
		appendN(t, l, 6, 12, "new")
		if idx, rec, err := tl.Next(ctx, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Next = %d %q, %v; want ErrNotFound (records 6..10 it returned were replaced)", idx, rec, err)
		}
		// A tailer started afresh reads the new records.
		tl = l.Tail(6)
		if idx, rec, err := tl.Next(ctx, nil); err != nil || idx != 6 || string(rec) != "new6" {
			t.Fatalf("new tailer: %d %q, %v", idx, rec, err)
		}
	})
	t.Run("records kept", func(t *testing.T) {
		l, tl := setup(t, 5, 7)
		appendN(t, l, 8, 9, "new")
		for _, want := range []string{"old6", "old7", "new8", "new9"} {
			if _, rec, err := tl.Next(ctx, nil); err != nil || string(rec) != want {
				t.Fatalf("Next = %q, %v; want %q", rec, err, want)
			}
		}
	})
}
