//go:build cgo && !nopmdk

package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pmdk_decl.h"

static __typeof__(&pmemlog_create) f_create;
static __typeof__(&pmemlog_open) f_open;
static __typeof__(&pmemlog_close) f_close;
static __typeof__(&pmemlog_append) f_append;
static __typeof__(&pmemlog_appendv) f_appendv;
static __typeof__(&pmemlog_rewind) f_rewind;
static __typeof__(&pmemlog_walk) f_walk;
static __typeof__(&pmemlog_errormsg) f_logerr;
static __typeof__(&pmem_map_file) f_map;
static __typeof__(&pmem_unmap) f_unmap;
static __typeof__(&pmem_persist) f_persist;
static __typeof__(&pmem_drain) f_drain;
static __typeof__(&pmem_memcpy_persist) f_cpy_persist;
static __typeof__(&pmem_memcpy_nodrain) f_cpy_nodrain;
static __typeof__(&pmem_errormsg) f_memerr;

static char load_err[512];

#define SYM(lib, var, name) do { \
	*(void **)(&var) = dlsym(lib, name); \
	if (!var) { snprintf(load_err, sizeof load_err, "dlsym %s: %s", name, dlerror()); return load_err; } \
} while (0)

// pmdk_load sets PMEM_IS_PMEM_FORCE=1 (read by libpmem when it loads) and
// loads the two libraries. It returns NULL or what went wrong.
static const char *pmdk_load(const char *libpmem, const char *libpmemlog) {
	setenv("PMEM_IS_PMEM_FORCE", "1", 1);
	void *mem = dlopen(libpmem, RTLD_NOW | RTLD_GLOBAL);
	if (!mem) { snprintf(load_err, sizeof load_err, "%s", dlerror()); return load_err; }
	void *log = dlopen(libpmemlog, RTLD_NOW | RTLD_GLOBAL);
	if (!log) { snprintf(load_err, sizeof load_err, "%s", dlerror()); return load_err; }
	SYM(log, f_create, "pmemlog_create");
	SYM(log, f_open, "pmemlog_open");
	SYM(log, f_close, "pmemlog_close");
	SYM(log, f_append, "pmemlog_append");
	SYM(log, f_appendv, "pmemlog_appendv");
	SYM(log, f_rewind, "pmemlog_rewind");
	SYM(log, f_walk, "pmemlog_walk");
	SYM(log, f_logerr, "pmemlog_errormsg");
	SYM(mem, f_map, "pmem_map_file");
	SYM(mem, f_unmap, "pmem_unmap");
	SYM(mem, f_persist, "pmem_persist");
	SYM(mem, f_drain, "pmem_drain");
	SYM(mem, f_cpy_persist, "pmem_memcpy_persist");
	SYM(mem, f_cpy_nodrain, "pmem_memcpy_nodrain");
	SYM(mem, f_memerr, "pmem_errormsg");
	return NULL;
}

static int64_t now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static const char *plog_errormsg(void) { return f_logerr(); }
static const char *pmem_err(void) { return f_memerr(); }
static void *plog_create(const char *path, size_t size) { return f_create(path, size, 0600); }
static void *plog_open(const char *path) { return f_open(path); }
static void plog_close(void *p) { f_close(p); }
static void plog_rewind(void *p) { f_rewind(p); }

#define MAXBATCH 4096

// plog_append_loop makes n calls of pmemlog_append (batch 1) or
// pmemlog_appendv (batch records), rewinding the pool when it is full.
// Call start+i+1 is timed when every divides it; the latencies go to lat.
// It returns the number of latencies written, or -1 with errno set.
static long plog_append_loop(void *p, const char *buf, size_t size, int batch,
		long n, long start, int every, int64_t *lat) {
	struct iovec iov[MAXBATCH];
	if (batch < 1 || batch > MAXBATCH) { errno = EINVAL; return -1; }
	for (int i = 0; i < batch; i++) { iov[i].iov_base = (void *)buf; iov[i].iov_len = size; }
	long ns = 0;
	for (long i = 0; i < n; i++) {
		int timed = every > 0 && (start + i + 1) % every == 0;
		int64_t t0 = timed ? now_ns() : 0;
		for (int tries = 0;; tries++) {
			int r = batch == 1 ? f_append(p, buf, size) : f_appendv(p, iov, batch);
			if (r == 0) break;
			if (errno != ENOSPC || tries > 0) return -1;
			f_rewind(p);
		}
		if (timed) lat[ns++] = now_ns() - t0;
	}
	return ns;
}

struct walk_state {
	int64_t deadline, t, *lat;
	long every, start, cap, nlat;
	long long n, sum;
	int stopped;
};

static int walk_chunk(const void *buf, size_t len, void *arg) {
	struct walk_state *w = arg;
	if (w->t) {
		if (w->nlat < w->cap) w->lat[w->nlat++] = now_ns() - w->t;
		w->t = 0;
	}
	w->sum += ((const unsigned char *)buf)[0] + (long long)len;
	w->n++;
	if (w->every > 0 && (w->start + w->n) % w->every == 0) w->t = now_ns();
	if (w->n % 1024 == 0 && now_ns() >= w->deadline) { w->stopped = 1; return 0; }
	return 1;
}

// plog_read walks the pool in size-byte chunks from the start until the
// deadline (budget_ns from now) or the end, and returns the chunks read.
static long long plog_read(void *p, size_t size, int64_t budget_ns, long start, int every,
		int64_t *lat, long cap, long *nlat, int *stopped) {
	struct walk_state w = {0};
	w.deadline = now_ns() + budget_ns;
	w.lat = lat; w.cap = cap; w.every = every; w.start = start;
	f_walk(p, size, walk_chunk, &w);
	*nlat = w.nlat;
	*stopped = w.stopped;
	return w.n + (w.sum < 0);
}

static void *fl_map(const char *path, size_t len, size_t *mapped) {
	int is_pmem;
	return f_map(path, len, PMEM_FILE_CREATE, 0600, mapped, &is_pmem);
}
static int fl_unmap(void *addr, size_t len) { return f_unmap(addr, len); }

// fl_touch writes and persists the whole mapping, as a log preallocates
// its segments, so the timed loops do not take page faults.
static void fl_touch(char *base, size_t len) { memset(base, 0, len); f_persist(base, len); }

// fl_append_loop is the floor: n calls that each copy batch records of
// size bytes into the mapping with pmem_memcpy_persist (batch 1) or
// pmem_memcpy_nodrain and one pmem_drain, at offsets reserved from the
// shared cursor, wrapping at len.
static long fl_append_loop(char *base, size_t len, uint64_t *cursor, const char *buf,
		size_t size, int batch, long n, long start, int every, int64_t *lat) {
	size_t rec = (size + 7) & ~(size_t)7;
	size_t slots = len / rec;
	long ns = 0;
	for (long i = 0; i < n; i++) {
		int timed = every > 0 && (start + i + 1) % every == 0;
		int64_t t0 = timed ? now_ns() : 0;
		uint64_t first = __atomic_fetch_add(cursor, (uint64_t)batch, __ATOMIC_RELAXED);
		if (batch == 1) {
			f_cpy_persist(base + (first % slots) * rec, buf, size);
		} else {
			for (int j = 0; j < batch; j++)
				f_cpy_nodrain(base + ((first + j) % slots) * rec, buf, size);
			f_drain();
		}
		if (timed) lat[ns++] = now_ns() - t0;
	}
	return ns;
}

// fl_read_loop copies n records of size bytes out of the mapping into dst,
// sequentially from record *pos, wrapping at len.
static long fl_read_loop(const char *base, size_t len, uint64_t *pos, char *dst,
		size_t size, long n, long start, int every, int64_t *lat) {
	size_t rec = (size + 7) & ~(size_t)7;
	size_t slots = len / rec;
	long ns = 0;
	for (long i = 0; i < n; i++) {
		int timed = every > 0 && (start + i + 1) % every == 0;
		int64_t t0 = timed ? now_ns() : 0;
		memcpy(dst, base + (*pos % slots) * rec, size);
		(*pos)++;
		if (timed) lat[ns++] = now_ns() - t0;
	}
	return ns;
}

static volatile char fl_sink;
static void fl_prefault(const char *base, size_t len) {
	char x = 0;
	for (size_t i = 0; i < len; i += 4096) x ^= base[i];
	fl_sink = x;
}

static uint64_t *new_cursor(void) { return calloc(1, sizeof(uint64_t)); }
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"
)

// pmdkLibs are the shared objects loaded at run time (package libpmem1 and
// libpmemlog1, which libpmem-dev and libpmemlog-dev depend on). Tests
// point them elsewhere to exercise the skip path.
var pmdkLibs = [2]string{"libpmem.so.1", "libpmemlog.so.1"}

var (
	pmdkOnce sync.Once
	pmdkErr  error
)

// loadPMDK loads libpmem and libpmemlog once, with PMEM_IS_PMEM_FORCE=1.
func loadPMDK() error {
	pmdkOnce.Do(func() {
		mem, log := C.CString(pmdkLibs[0]), C.CString(pmdkLibs[1])
		defer C.free(unsafe.Pointer(mem))
		defer C.free(unsafe.Pointer(log))
		if msg := C.pmdk_load(mem, log); msg != nil {
			pmdkErr = fmt.Errorf("loading PMDK: %s", C.GoString(msg))
		}
	})
	return pmdkErr
}

// pmdkPoolSize is the size of the pools and mappings the append workloads
// use; they wrap around (pmemlog_rewind) when full, so the memory is
// faulted in once, as a long-lived pool's would be.
const pmdkPoolSize = 16 << 20

// latBuf returns w's latency scratch buffer for n calls.
func latBuf(n int) []C.int64_t { return make([]C.int64_t, n+1) }

// recordC adds the first k latencies of lat to w's histogram.
func recordC(w *worker, lat []C.int64_t, k C.long) {
	for _, v := range lat[:k] {
		w.hist.recordNS(int64(v))
	}
}

func every(w *worker) C.int {
	if !w.measure {
		return 0
	}
	return C.int(w.every)
}

// ---- libpmemlog ----

type pmemlogDriver struct{}

func poolPath(dir string) string { return filepath.Join(dir, "pool") }

func (pmemlogDriver) create(dir string) (store, error) {
	if err := loadPMDK(); err != nil {
		return nil, err
	}
	s, err := createPool(dir, pmdkPoolSize)
	if err != nil {
		return nil, err
	}
	// Fault the pool in once, as the log's own segments are prepared.
	if err := s.fill(pmdkPoolSize-(1<<20), 1024); err != nil {
		s.close()
		return nil, err
	}
	C.plog_rewind(s.p)
	return s, nil
}

// createSized makes a pool for a log of total bytes, for the open and read
// workloads.
func (pmemlogDriver) createSized(dir string, total int64) (store, error) {
	if err := loadPMDK(); err != nil {
		return nil, err
	}
	return createPool(dir, total+total/16+(8<<20))
}

func createPool(dir string, size int64) (*pmemlogStore, error) {
	path := C.CString(poolPath(dir))
	defer C.free(unsafe.Pointer(path))
	p, err := C.plog_create(path, C.size_t(size))
	if p == nil {
		return nil, fmt.Errorf("pmemlog_create %s: %s: %w", poolPath(dir), C.GoString(C.plog_errormsg()), err)
	}
	return &pmemlogStore{p: p}, nil
}

func (pmemlogDriver) open(dir string) (store, error) {
	if err := loadPMDK(); err != nil {
		return nil, err
	}
	path := C.CString(poolPath(dir))
	defer C.free(unsafe.Pointer(path))
	p, err := C.plog_open(path)
	if p == nil {
		return nil, fmt.Errorf("pmemlog_open %s: %s: %w", poolPath(dir), C.GoString(C.plog_errormsg()), err)
	}
	return &pmemlogStore{p: p}, nil
}

// pmemlogStore is an open pmemlog pool: pmemlog_append and pmemlog_appendv
// are thread-safe, so workers call them directly.
type pmemlogStore struct{ p unsafe.Pointer }

func (s *pmemlogStore) appendCalls(w *worker, n int) error {
	lat := latBuf(n)
	k, err := C.plog_append_loop(s.p, (*C.char)(unsafe.Pointer(&w.buf[0])), C.size_t(w.size),
		C.int(w.batch), C.long(n), C.long(w.calls), every(w), &lat[0])
	if k < 0 {
		return fmt.Errorf("pmemlog_append: %s: %w", C.GoString(C.plog_errormsg()), err)
	}
	w.calls += int64(n)
	recordC(w, lat, k)
	return nil
}

func (s *pmemlogStore) fill(total int64, size int) error {
	return fillByCalls(s.appendCalls, total, size)
}

func (s *pmemlogStore) read(w *worker, deadline time.Time) (int64, error) {
	const capLat = 1 << 16
	lat := make([]C.int64_t, capLat)
	var total int64
	for {
		var nlat C.long
		var stopped C.int
		n := C.plog_read(s.p, C.size_t(w.size), C.int64_t(time.Until(deadline).Nanoseconds()),
			C.long(w.calls), every(w), &lat[0], capLat, &nlat, &stopped)
		w.calls += int64(n)
		total += int64(n)
		recordC(w, lat, nlat)
		if n == 0 {
			return total, errors.New("pmemlog_walk: empty pool")
		}
		if stopped != 0 || !time.Now().Before(deadline) {
			return total, nil
		}
	}
}

func (s *pmemlogStore) close() error {
	C.plog_close(s.p)
	return nil
}

// ---- the floor: pmem_memcpy_persist into a mapped file ----

type floorDriver struct{}

func (floorDriver) create(dir string) (store, error) {
	s, err := mapFloor(dir, pmdkPoolSize)
	if err != nil {
		return nil, err
	}
	C.fl_touch((*C.char)(s.base), s.len)
	return s, nil
}

// floorReadSize bounds the floor's file for the read workload: reading
// memory back needs no log, only a mapping larger than the caches, and
// faulting in a gigabyte on every open would only slow the run.
const floorReadSize = 64 << 20

// createSized maps a file for the read workload.
func (floorDriver) createSized(dir string, total int64) (store, error) {
	return mapFloor(dir, min(total, floorReadSize))
}

func mapFloor(dir string, size int64) (*floorStore, error) {
	if err := loadPMDK(); err != nil {
		return nil, err
	}
	path := C.CString(poolPath(dir))
	defer C.free(unsafe.Pointer(path))
	var mapped C.size_t
	base, err := C.fl_map(path, C.size_t(size), &mapped)
	if base == nil {
		return nil, fmt.Errorf("pmem_map_file %s: %s: %w", poolPath(dir), C.GoString(C.pmem_err()), err)
	}
	return &floorStore{base: base, len: mapped, cursor: C.new_cursor()}, nil
}

func (floorDriver) open(dir string) (store, error) {
	fi, err := os.Stat(poolPath(dir))
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	s, err := mapFloor(dir, fi.Size())
	if err != nil {
		return nil, err
	}
	// Fault the mapping in (untimed), as the log's recovery does.
	C.fl_prefault((*C.char)(s.base), s.len)
	return s, nil
}

// floorStore is a mapped file and a shared append cursor.
type floorStore struct {
	base   unsafe.Pointer
	len    C.size_t
	cursor *C.uint64_t
}

func (s *floorStore) appendCalls(w *worker, n int) error {
	lat := latBuf(n)
	k := C.fl_append_loop((*C.char)(s.base), s.len, s.cursor, (*C.char)(unsafe.Pointer(&w.buf[0])),
		C.size_t(w.size), C.int(w.batch), C.long(n), C.long(w.calls), every(w), &lat[0])
	w.calls += int64(n)
	recordC(w, lat, k)
	return nil
}

// fill writes the whole mapping (the floor keeps no records, so a full
// mapping stands for a log of that size).
func (s *floorStore) fill(total int64, size int) error {
	C.fl_touch((*C.char)(s.base), s.len)
	return nil
}

func (s *floorStore) read(w *worker, deadline time.Time) (int64, error) {
	const chunk = 1024
	lat := latBuf(chunk)
	var pos C.uint64_t
	var total int64
	for time.Now().Before(deadline) || total == 0 {
		k := C.fl_read_loop((*C.char)(s.base), s.len, &pos, (*C.char)(unsafe.Pointer(&w.buf[0])),
			C.size_t(w.size), chunk, C.long(w.calls), every(w), &lat[0])
		w.calls += chunk
		total += chunk
		recordC(w, lat, k)
	}
	return total, nil
}

func (s *floorStore) close() error {
	C.free(unsafe.Pointer(s.cursor))
	if C.fl_unmap(s.base, s.len) != 0 {
		return fmt.Errorf("pmem_unmap: %s", C.GoString(C.pmem_err()))
	}
	return nil
}

// pmdkBuild says how this binary reaches PMDK.
const pmdkBuild = "cgo, dlopen"
