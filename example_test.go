package wal_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	fmt.Println(errors.Is(err, wal.ErrNotFound), l.FirstIndex(), l.LastIndex())
	// Output: true 1 0
}

// Persist reports the persistence path in effect, never PersistAuto: on a
// DAX filesystem PersistAuto gives PersistDAX; elsewhere it falls back to
// PersistMsync. (The output does not depend on the file system, nor on
// WAL_PERSIST, which overrides Options.Persist.)
func ExampleLog_Persist() {
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
	switch l.Persist() {
	case wal.PersistDAX:
		fmt.Println("appends flush CPU caches to persistent memory, no system call")
	case wal.PersistCacheFlush, wal.PersistMsync:
		fmt.Println("appends made durable on this file system")
	default:
		fmt.Println("unexpected:", l.Persist())
	}
	// Output: appends made durable on this file system
}

func ExampleParsePersist() {
	p, err := wal.ParsePersist("cacheflush")
	fmt.Println(p, err)
	// Output: cacheflush <nil>
}

// useIt is the README's "Use it" code, verbatim between the markers:
// TestReadmeUseIt fails when the two differ, so the README shows only
// code that compiles and runs (as Example_useIt).
func useIt(dir string) error {
	// README begins
	l, err := wal.Open(dir, nil) // e.g. "/mnt/pmem/mylog"; nil options: defaults, PersistAuto
	if err != nil {
		return err
	}
	defer l.Close()

	idx, err := l.Append([]byte("insert 1")) // durable when it returns
	if err != nil {
		return err
	}
	batch := [][]byte{[]byte("insert 2"), []byte("insert 3")}
	first, err := l.AppendBatch(batch) // all or nothing after a crash
	if err != nil {
		return err
	}
	rec, err := l.Read(idx) // verified, a copy the caller owns
	if err != nil {
		return err
	}
	fmt.Printf("%d: %s; the batch starts at %d\n", idx, rec, first)

	_, err = l.Read(l.LastIndex() + 1)
	if errors.Is(err, wal.ErrNotFound) { // outside [FirstIndex, LastIndex]
		fmt.Println("past the end:", err)
	}
	return nil
	// README ends
}

// The README's "Use it" code, run.
func Example_useIt() {
	dir, err := os.MkdirTemp("", "pmwal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := useIt(dir); err != nil {
		log.Fatal(err)
	}
	// Output:
	// 1: insert 1; the batch starts at 2
	// past the end: wal: record not found: index 4 outside [1, 3]
}

// TestReadmeUseIt: the README's "Use it" block is useIt's body, dedented.
func TestReadmeUseIt(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no source tree here (a test binary run elsewhere, as in the DAX guest)")
	}
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(src), "\t// README begins\n")
	body, _, ok2 := strings.Cut(body, "\t// README ends\n")
	if !ok || !ok2 {
		t.Fatal("example_test.go: useIt has no README markers")
	}
	var want strings.Builder
	for _, line := range strings.SplitAfter(body, "\n") {
		want.WriteString(strings.TrimPrefix(line, "\t"))
	}
	readme, err := os.ReadFile(filepath.Join(".", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Use it\n")
	_, block, ok2 := strings.Cut(section, "```go\n")
	block, _, ok3 := strings.Cut(block, "```\n")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md: no go block under \"## Use it\"")
	}
	if block != want.String() {
		t.Errorf("README.md's \"Use it\" code is not useIt's in example_test.go; README has:\n%s\nexample_test.go has:\n%s", block, want.String())
	}
}
