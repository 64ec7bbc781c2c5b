package wal

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestReview4StoragePortableFlushErrorReported: on the portable flush path
// (-tags purego, and every architecture but amd64) a Flush or StoreNT of
// the OS mapping is an msync (hw.flushRange / hw.copyNT return its
// error). osMapping.Flush and osMapping.StoreNT once dropped that error,
// so segment.persist, an activation, a zeroing and every append on
// PersistDAX / PersistCacheFlush reported success although the kernel said
// the bytes did not reach the media; now Fence reports it. README: "ErrFailed (an
// msync or flush failed: the log refuses appends until reopened, so it
// can never claim durable what the kernel may have dropped)". The msync
// is made to fail here by unmapping the page behind the mapping (ENOMEM);
// on real media it is EIO from write-back.
func TestReview4StoragePortableFlushErrorReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(path, make([]byte, 2*pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &hw{flush: flushMsync, ntMin: -1} // what resolveHW gives on the portable build
	f, err := (&osMedia{hw: h}).Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := f.Map(PersistCacheFlush)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	s := &segment{path: path, f: f, m: mp, mem: mp.Bytes(), mode: mp.Persist()}
	s.om, _ = mp.(*osMapping)
	defer s.release()
	page := int(pageSize)
	// The second page goes away under the mapping: any msync covering it fails.
	if err := unix.MunmapPtr(unsafe.Pointer(&s.mem[page]), pageSize); err != nil {
		t.Fatal(err)
	}
	if err := msyncRange(unsafe.Pointer(&s.mem[page]), 8); err == nil {
		t.Fatal("setup: msync of the unmapped page did not fail")
	}
	if err := s.persist(page, 8); err == nil {
		t.Error("segment.persist returned nil although its msync failed")
	}
	if err := s.persist(page+64, 16); err == nil {
		t.Error("segment.persist (second range) returned nil although its msync failed")
	}
}

// TestReview4StorageNewLogDirDurable: Open creates the log's directory
// (and missing parents) with MkdirAll. Unless each new directory's entry is
// synced in its parent, a power failure may take away the whole directory,
// with every acknowledged record in it (Open once synced only the log
// directory itself).
func TestReview4StorageNewLogDirDurable(t *testing.T) {
	rtEnv(t)
	h, err := resolveHW("/sys")
	if err != nil {
		t.Fatal(err)
	}
	m := &r5RootMedia{inner: &osMedia{hw: &h}, synced: map[string]bool{}} // root "": the host's own paths
	dir := filepath.Join(rtDir(t), "a", "log")
	o := rtOpts(false)
	o.Media = m
	l := rtOpen(t, dir, o)
	if _, err := l.Append([]byte("acknowledged")); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.created) == 0 {
		t.Fatal("setup: Open created no directory")
	}
	for _, d := range m.created {
		if p := filepath.Dir(d); !m.synced[p] {
			t.Errorf("Open created %s but never synced its parent %s; an acknowledged append lives in a directory a crash can take away", d, p)
		}
	}
}
