package raftstore

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/pmwal/wal"
)

// TestReview5RaftStoreLogsAfterClose: Close documents "Methods called
// after Close fail with an error wrapping wal.ErrClosed", and c29294d gave
// FirstIndex, LastIndex and DeleteRange a closed flag for it. StoreLogs
// reads the log's first and last index itself and once skipped the flag:
// after Close it answered an index conflict with ErrOutOfOrder (from the
// closed log's stale indexes) and an empty batch with success.
func TestReview5RaftStoreLogsAfterClose(t *testing.T) {
	s, _, _ := openTest(t)
	if err := s.StoreLogs(entries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LastIndex(); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("setup: LastIndex after Close = %v, want wal.ErrClosed", err)
	}
	if err := s.StoreLog(entry(5, 2)); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("StoreLog(5) after Close = %v, want an error wrapping wal.ErrClosed", err)
	}
	if err := s.StoreLogs(nil); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("StoreLogs(nil) after Close = %v, want an error wrapping wal.ErrClosed", err)
	}
	var l raft.Log
	if err := s.GetLog(5, &l); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("GetLog(5) after Close = %v, want an error wrapping wal.ErrClosed", err)
	}
}
