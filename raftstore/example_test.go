package raftstore_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	"github.com/pmwal/wal"
	"github.com/pmwal/wal/raftstore"
)

// A Store is raft's LogStore and StableStore at once: entries go in by
// index, the stable keys by name, and both are durable when the call
// returns.
func Example() {
	dir, err := os.MkdirTemp("", "raftstore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := raftstore.Open(dir, &wal.Options{SegmentSize: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// A follower's first entries after a snapshot at index 99.
	err = s.StoreLogs([]*raft.Log{
		{Index: 100, Term: 4, Type: raft.LogCommand, Data: []byte("set x=1")},
		{Index: 101, Term: 4, Type: raft.LogCommand, Data: []byte("set y=2")},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 4); err != nil {
		log.Fatal(err)
	}

	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	var e raft.Log
	if err := s.GetLog(101, &e); err != nil {
		log.Fatal(err)
	}
	term, _ := s.GetUint64([]byte("CurrentTerm"))
	fmt.Printf("entries %d..%d, entry 101: term %d %q, current term %d\n", first, last, e.Term, e.Data, term)

	// A gap is refused; an index outside the log is raft.ErrLogNotFound.
	fmt.Println(s.StoreLog(&raft.Log{Index: 103, Term: 4}))
	fmt.Println(s.GetLog(7, &e) == raft.ErrLogNotFound)

	// Compaction after a snapshot drops a prefix.
	if err := s.DeleteRange(100, 100); err != nil {
		log.Fatal(err)
	}
	first, _ = s.FirstIndex()
	fmt.Println("first index after compaction:", first)
	// Output:
	// entries 100..101, entry 101: term 4 "set y=2", current term 4
	// raftstore: log index out of order: gap: index 103 after last index 101 (want 102)
	// true
	// first index after compaction: 101
}

// Open gives raft its log and stable store; raft.NewLogCache in front
// serves recent entries to replication from memory.
func ExampleOpen() {
	dir := "/var/lib/myservice/raft"
	store, err := raftstore.Open(filepath.Join(dir, "store"), nil) // PersistAuto: MAP_SYNC on DAX, msync elsewhere
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		log.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir, "snapshots"), 2, os.Stderr)
	if err != nil {
		log.Fatal(err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = "node1"
	_, trans := raft.NewInmemTransport("node1")
	var fsm raft.FSM // the application's state machine
	r, err := raft.NewRaft(conf, fsm, logs, store, snaps, trans)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Shutdown()
}
