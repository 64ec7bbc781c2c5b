package wal

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// r4Read reads records from tl up to and including index to.
func r4Read(t *testing.T, tl *Tailer, to uint64) {
	t.Helper()
	for {
		idx, _, err := tl.Next(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if idx == to {
			return
		}
	}
}

// r4TailedTen returns a log of records "old1".."old10" and a tailer that
// has returned all of them.
func r4TailedTen(t *testing.T) (*Log, *Tailer) {
	t.Helper()
	l := truncOpen(t, truncDir(t))
	for i := uint64(1); i <= 10; i++ {
		if _, err := l.Append([]byte(fmt.Sprint("old", i))); err != nil {
			l.Close()
			t.Fatal(err)
		}
	}
	tl := l.Tail(1)
	r4Read(t, tl, 10)
	return l, tl
}

// TestReview4ReadTailerSeesReplacedRecords: a tailer returned records
// 1..10; TruncateBack(5) removed 6..10, and new, different records 6..9
// were appended, then a record 10 with the same bytes as the old one. The
// tailer's last returned record was removed by TruncateBack (and records
// 6..9 it returned are no longer the log's), so Next must give ErrNotFound
// (README: "ErrNotFound once a TruncateBack has removed or replaced what
// it returned"). Comparing record 10's checksum, as Next once did, cannot
// tell: the same bytes at the same place in the same segment have the same
// checksum.
func TestReview4ReadTailerSeesReplacedRecords(t *testing.T) {
	l, tl := r4TailedTen(t)
	defer l.Close()
	if err := l.TruncateBack(5); err != nil {
		t.Fatal(err)
	}
	for i := uint64(6); i <= 9; i++ {
		if _, err := l.Append([]byte(fmt.Sprint("new", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append([]byte("old10")); err != nil { // same bytes as the removed record 10
		t.Fatal(err)
	}
	if _, err := l.Append([]byte("new11")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	idx, rec, err := tl.Next(ctx, nil)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Next = %d %q, %v; want ErrNotFound: records 6..10 this tailer returned were removed by TruncateBack (and 6..9 replaced by different ones)", idx, rec, err)
	}
}

// TestReview4ReadTailerCutInsideBatch: a tailer returned records 1..3 of a
// batch 1..5; TruncateBack(3) keeps records 1..3 (it rewrites record 3's
// batchLeft, and so its checksum word, to end the batch there). Nothing the
// tailer returned was removed or replaced, so it must go on with record 4
// when one is appended. (Comparing checksums, as Next once did, said
// ErrNotFound: the cut rewrites record 3's checksum word.)
func TestReview4ReadTailerCutInsideBatch(t *testing.T) {
	l := truncOpen(t, truncDir(t))
	defer l.Close()
	if _, err := l.AppendBatch([][]byte{[]byte("b1"), []byte("b2"), []byte("b3"), []byte("b4"), []byte("b5")}); err != nil {
		t.Fatal(err)
	}
	tl := l.Tail(1)
	r4Read(t, tl, 3)
	if err := l.TruncateBack(3); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Read(3); err != nil || string(got) != "b3" {
		t.Fatalf("Read(3) after TruncateBack(3) = %q, %v", got, err)
	}
	if _, err := l.Append([]byte("n4")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	idx, rec, err := tl.Next(ctx, nil)
	if err != nil || idx != 4 || string(rec) != "n4" {
		t.Fatalf("Next = %d %q, %v; want 4 \"n4\": records 1..3 this tailer returned are all still the log's", idx, rec, err)
	}
}

// TestReview4ReadWaitingTailerWokenByTruncateBack: a tailer that has
// returned records 1..10 and waits in Next for record 11 must be woken with
// ErrNotFound when TruncateBack(5) removes the records it returned, as a
// tailer that calls Next afterwards is (TestTailerAfterTruncateBack). Only
// a rise of the durable index woke tailers once, so the waiter slept on
// until the next append: for ever on a log that gets none.
func TestReview4ReadWaitingTailerWokenByTruncateBack(t *testing.T) {
	l, tl := r4TailedTen(t)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := tl.Next(ctx, nil)
		done <- err
	}()
	// Let it block waiting for record 11.
	for {
		l.mu.Lock()
		waiting := l.grew != nil
		l.mu.Unlock()
		if waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.TruncateBack(5); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrNotFound) {
		t.Fatalf("waiting Next after TruncateBack(5) removed the records it returned: %v; want ErrNotFound", err)
	}
}
