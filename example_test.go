package wal_test

import (
	"fmt"
	"log"
	"os"

	"github.com/pmwal/wal"
)

// A log is opened on a directory, appended to, closed, and reopened: what
// was acknowledged is there, in order, at the indexes Append returned.
func Example() {
	dir, err := os.MkdirTemp("", "pmwal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := wal.Open(dir, &wal.Options{SegmentSize: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	for _, msg := range []string{"create table t", "insert 1", "insert 2"} {
		if _, err := l.Append([]byte(msg)); err != nil {
			log.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}

	l, err = wal.Open(dir, &wal.Options{SegmentSize: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
		rec, err := l.Read(i)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %s\n", i, rec)
	}
	// Output:
	// 1 create table t
	// 2 insert 1
	// 3 insert 2
}

// AppendBatch makes several records durable with one flush and fence (or
// one msync); after a crash the batch is there whole or not at all.
func ExampleLog_AppendBatch() {
	dir, err := os.MkdirTemp("", "pmwal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := wal.Open(dir, &wal.Options{SegmentSize: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	first, err := l.AppendBatch([][]byte{[]byte("debit A 10"), []byte("credit B 10")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("batch starts at", first, "last index", l.LastIndex())
	// Output: batch starts at 1 last index 2
}

// Read outside the log's range reports ErrNotFound, checked with errors.Is.
func ExampleLog_Read() {
	dir, err := os.MkdirTemp("", "pmwal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := wal.Open(dir, &wal.Options{SegmentSize: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	_, err = l.Read(1)
	fmt.Println(err != nil, l.FirstIndex(), l.LastIndex())
	// Output: true 1 0
}

// Persist reports the persistence path in effect. On a DAX filesystem
// PersistAuto gives PersistDAX; elsewhere it falls back to PersistMsync.
func ExampleLog_Persist() {
	dir, err := os.MkdirTemp("", "pmwal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := wal.Open(dir, &wal.Options{SegmentSize: 1 << 20, Persist: wal.PersistMsync})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	fmt.Println(l.Persist())
	// Output: msync
}

func ExampleParsePersist() {
	p, err := wal.ParsePersist("cacheflush")
	fmt.Println(p, err)
	// Output: cacheflush <nil>
}
