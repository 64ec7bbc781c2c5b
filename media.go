package wal

import (
	"io"
	"io/fs"
)

// Media is the storage a Log lives on: its directory, its segment files and
// their memory mappings. Open uses the operating system's files and mmap
// when Options.Media is nil. Another implementation can sit under the real
// append and recovery code: package github.com/pmwal/wal/fuzz provides one
// that simulates power failure at 8-byte granularity.
//
// Paths are the ones the log builds: the directory given to Open joined
// with a file name. A Media must be safe for concurrent use; the log
// prepares the next segment in the background while appends run. A Media
// that also has a method Deterministic() bool returning true gets that
// preparation done inline instead, so that the order of its calls depends
// only on the program's (a simulator replaying from a seed needs this).
type Media interface {
	// MkdirAll creates dir and its parents if they are missing.
	MkdirAll(dir string, perm fs.FileMode) error
	// Lock takes exclusive use of dir. While held, another Lock of the same
	// directory, through any Media of the same storage, fails with an error
	// wrapping ErrLocked. Close releases it.
	Lock(dir string, perm fs.FileMode) (io.Closer, error)
	// ReadDir lists the directory's entries.
	ReadDir(dir string) ([]fs.DirEntry, error)
	// CreateSegment makes a complete file of size bytes at path holding
	// header at offset 0 and zeros after it, fully allocated, and durable
	// together with its directory entry when it returns. A crash before it
	// returns leaves no file at path (at most a file whose name ends in
	// ".seg.tmp", which recovery removes).
	CreateSegment(path string, size int64, header []byte, perm fs.FileMode) error
	// Open opens an existing file for reading and writing.
	Open(path string) (MediaFile, error)
	// ReadFile returns a small file's contents (the log's META).
	ReadFile(path string) ([]byte, error)
	// ReplaceFile atomically and durably replaces a small file: after a
	// crash at any moment it holds either the old contents or data.
	ReplaceFile(path string, data []byte, perm fs.FileMode) error
	// Remove deletes a file. SyncDir makes removals durable.
	Remove(path string) error
	// Rename atomically and durably renames a file within its directory:
	// after a crash at any moment the file is under exactly one of the two
	// names, and under the new one once Rename returned. The log renames
	// only to recycle segment files (Options.RecycleSegments).
	Rename(oldpath, newpath string) error
	// SyncDir makes the directory's entries durable.
	SyncDir(dir string) error
}

// MediaFile is an open segment file.
type MediaFile interface {
	io.ReaderAt
	// Size is the file's length in bytes.
	Size() int64
	// Map maps the whole file shared and writable. want is PersistAuto
	// (MAP_SYNC where the file system allows it, else a page-cache mapping
	// made durable with Sync), PersistDAX (MAP_SYNC or an error wrapping
	// ErrNotDAX), PersistCacheFlush or PersistMsync.
	Map(want Persist) (Mapping, error)
	Close() error
}

// Mapping is a mapped segment file. The log stores into Bytes directly and
// makes the stores durable with Flush or StoreNT followed by one Fence (the
// persistent-memory modes), or with Sync (PersistMsync).
type Mapping interface {
	// Bytes is the mapped file.
	Bytes() []byte
	// Persist is the mode in effect: PersistDAX, PersistCacheFlush or
	// PersistMsync, never PersistAuto.
	Persist() Persist
	// Flush starts write-back of every cache line overlapping
	// Bytes()[off:off+n] and returns how many lines it flushed. The lines
	// are durable once Fence returns.
	Flush(off, n int) int
	// StoreNT copies src to Bytes()[off:] with non-temporal stores (or any
	// stores that are durable once Fence returns) and returns how many
	// cache lines it had to flush besides.
	StoreNT(off int, src []byte) int
	// Fence waits until every earlier Flush and StoreNT of this goroutine
	// is durable. It returns an error if one of them could not be made
	// durable (on the portable path, where they are msyncs, a failed
	// msync), then and at every later Fence: what reached the media is
	// unknown.
	Fence() error
	// Sync makes Bytes()[off:off+n] durable (msync MS_SYNC).
	Sync(off, n int) error
	// Unmap releases the mapping. Bytes must not be used afterwards.
	Unmap() error
}
