package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The flush contract, written once here and implemented twice:
// flush_amd64.go with flush_amd64.s (build tag !purego), and
// flush_generic.go (every other architecture, and -tags purego on amd64).
//
//	flushLines(kind, start, lines)
//		Starts write-back toward the persistence domain of lines cache lines
//		from the line-aligned address start, with the instruction kind
//		(flushCLWB, flushCLFLUSHOPT, flushCLFLUSH). Not complete until
//		drain returns. Not available on the portable path.
//
//	storeNT(dst, src, n)
//		Copies n bytes from src to dst (any alignment) with non-temporal
//		stores for every whole aligned 8-byte word of dst and plain stores
//		for an unaligned head and tail. Not complete until drain returns;
//		the caller writes back the head and tail lines (hw.copyNT does).
//		The portable path has no such stores and copies plainly.
//
//	drain()
//		Waits until every earlier flush and non-temporal store of this
//		thread has reached the persistence domain (SFENCE). Nothing on the
//		portable path, whose flushes are synchronous msyncs.
//
//	storeRelease(addr, v)
//		Stores v at *addr, read elsewhere with atomic loads, without
//		waiting for it or for any earlier store to complete: a plain MOV
//		on amd64, which x86 makes visible only after every earlier store
//		(and, after a drain, every earlier flush and non-temporal store),
//		so a thread that loads v finds all of those done. Unlike an
//		atomic store (XCHG, a locked instruction, which waits until the
//		drained stores are complete), later loads of the same thread may
//		pass it: where that matters, the other side calls membarrier
//		(membarrier.go). plainStoreRelease says which kind this build
//		has; on the portable path it is an atomic store.
//
// A commit is any number of flushes and non-temporal copies followed by
// exactly one drain. hw (below) chooses among them once per Log.

// cacheLine is the write-back granule on every supported CPU.
const cacheLine = 64

// Flush instructions.
const (
	flushCLWB       = iota // write back, keep the line cached (preferred)
	flushCLFLUSHOPT        // write back and evict, weakly ordered
	flushCLFLUSH           // write back and evict, serialising
	flushNone              // eADR: the caches are inside the persistence domain
	flushMsync             // portable build: msync(MS_SYNC) of the pages
)

var flushNames = [...]string{"clwb", "clflushopt", "clflush", "none", "msync"}

// hw is how one Log makes stores durable: resolved once at Open from the
// CPU, the platform and the environment (WAL_FLUSH, WAL_EADR,
// WAL_NT_THRESHOLD, WAL_PUBLISH, WAL_RESERVE).
type hw struct {
	flush int // one of the flush constants
	eadr  bool
	ntMin int // payloads of at least ntMin bytes use non-temporal stores; -1: never
	// plainPublish: appends publish with storeRelease's plain store
	// instead of an atomic one (WAL_PUBLISH; fastpath.go).
	plainPublish bool
	// bias: an epoch of the fast path may be owned by one processor,
	// which then reserves without a locked instruction (WAL_RESERVE;
	// bias.go). Only with plainPublish, which registered membarrier.
	bias bool
}

// Hardware describes how a Log makes its appends durable on the persistent
// memory paths (PersistDAX, PersistCacheFlush).
type Hardware struct {
	// Flush is the cache write-back instruction: "clwb", "clflushopt",
	// "clflush", "none" (eADR: caches are persistent, only the fence is
	// needed) or "msync" (the portable build).
	Flush string
	// EADR reports that every NVDIMM region's persistence domain is the CPU
	// cache (/sys/bus/nd/devices/region*/persistence_domain), or that
	// WAL_EADR=1 says so.
	EADR bool
	// NTThreshold is the payload size from which records are written with
	// non-temporal stores instead of stores plus write-back; -1 means never.
	NTThreshold int
	// NTStores names the non-temporal store used ("movnti", "vmovntdq", or "").
	NTStores string
	// CPU is the CPU vendor string, for reports.
	CPU string
	// Publish is how an append on the persistent-memory paths publishes
	// itself once its fence has retired: "store" (a plain store, so that
	// Append returns while the fenced stores drain, as PMDK's
	// pmem_persist does) or "xchg" (an atomic exchange, which waits until
	// they are complete; the only choice of the portable build, of -race
	// builds, and where membarrier(2) is unavailable, which tailing
	// readers need with "store").
	Publish string
	// Reserve is how an append on the persistent-memory paths reserves
	// its space and index: "cas" (a compare-and-swap, a locked
	// instruction, which waits until the previous append's fenced stores
	// are complete) or "biased" (while one processor makes every append
	// of a log, it reserves with plain loads and stores, and an append
	// from another processor revokes that with membarrier(2); "cas" is
	// the only choice where Publish is "xchg").
	Reserve string
}

func (h hw) describe() Hardware {
	pub := "xchg"
	if h.plainPublish {
		pub = "store"
	}
	res := "cas"
	if h.bias {
		res = "biased"
	}
	return Hardware{Flush: flushNames[h.flush], EADR: h.eadr, NTThreshold: h.ntMin, NTStores: ntStoresName(h.ntMin), CPU: cpuVendor(), Publish: pub, Reserve: res}
}

// DetectHardware reports what a Log opened now would use on the persistent
// memory paths, after the environment overrides WAL_FLUSH
// (clwb|clflushopt|clflush), WAL_EADR (0|1), WAL_NT_THRESHOLD (bytes, or
// "off", or "calibrate" to measure it on this CPU), WAL_PUBLISH
// (store|xchg) and WAL_RESERVE (biased|cas).
func DetectHardware() (Hardware, error) {
	h, err := resolveHW("/sys")
	return h.describe(), err
}

// resolveHW chooses the flush instruction, eADR and the non-temporal
// threshold from the CPU, the sysfs tree under sysfs, and the environment.
// pickFlush chooses the write-back instruction from CPUID's bits: CLWB
// (leaf 7 EBX bit 24; the line stays cached for readers), else
// CLFLUSHOPT (bit 23), else CLFLUSH (leaf 1 EDX bit 19; ordered by
// itself and serialising, so slowest). With none of them the mapping is
// made durable with msync, as in the portable build: persistence is
// never skipped.
func pickFlush(clwb, clflushopt, clflush bool) int {
	switch {
	case clwb:
		return flushCLWB
	case clflushopt:
		return flushCLFLUSHOPT
	case clflush:
		return flushCLFLUSH
	}
	return flushMsync
}

func resolveHW(sysfs string) (hw, error) {
	h := hw{flush: defaultFlush(), ntMin: defaultNTThreshold()}
	h.eadr = detectEADR(sysfs)
	if v := os.Getenv("WAL_FLUSH"); v != "" {
		k := -1
		for i, name := range flushNames[:flushNone] {
			if strings.EqualFold(v, name) {
				k = i
			}
		}
		if k < 0 {
			return h, fmt.Errorf("wal: WAL_FLUSH=%q: want clwb, clflushopt or clflush", v)
		}
		if !flushSupported(k) {
			return h, fmt.Errorf("wal: WAL_FLUSH=%q: not supported by this CPU or build", v)
		}
		h.flush = k
	}
	switch v := os.Getenv("WAL_EADR"); v {
	case "":
	case "1", "true", "on":
		h.eadr = true
	case "0", "false", "off":
		h.eadr = false
	default:
		return h, fmt.Errorf("wal: WAL_EADR=%q: want 0 or 1", v)
	}
	if v := os.Getenv("WAL_NT_THRESHOLD"); v != "" {
		if strings.EqualFold(v, "off") {
			h.ntMin = -1
		} else if strings.EqualFold(v, "calibrate") {
			h.ntMin = calibratedNT()
		} else if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			h.ntMin = n
		} else {
			return h, fmt.Errorf("wal: WAL_NT_THRESHOLD=%q: want a byte count, off or calibrate", v)
		}
		if !ntSupported() {
			h.ntMin = -1
		}
	}
	// The plain store needs the assembly, a build without -race (whose
	// detector must see each publication as atomic) and membarrier
	// (registered only if it may be used: the first registration of a
	// process can take milliseconds).
	plainOK := func() bool { return plainStoreRelease && !raceEnabled && membarrierOK() }
	switch v := os.Getenv("WAL_PUBLISH"); {
	case v == "":
		h.plainPublish = plainOK()
	case strings.EqualFold(v, "xchg"):
	case strings.EqualFold(v, "store"):
		if !plainOK() {
			return h, fmt.Errorf("wal: WAL_PUBLISH=%q: not available in this build or kernel (needs amd64 without purego or race, and membarrier)", v)
		}
		h.plainPublish = true
	default:
		return h, fmt.Errorf("wal: WAL_PUBLISH=%q: want store or xchg", v)
	}
	// Biased reservation revokes with membarrier, as the plain publication
	// needs it, and pins with the runtime's procPin (pin_amd64.go).
	switch v := os.Getenv("WAL_RESERVE"); {
	case v == "":
		h.bias = h.plainPublish
	case strings.EqualFold(v, "cas"):
	case strings.EqualFold(v, "biased"):
		if !h.plainPublish {
			return h, fmt.Errorf("wal: WAL_RESERVE=%q: needs the plain-store publication (WAL_PUBLISH=store and what it needs)", v)
		}
		h.bias = true
	default:
		return h, fmt.Errorf("wal: WAL_RESERVE=%q: want biased or cas", v)
	}
	if h.eadr && h.flush != flushMsync {
		h.flush = flushNone
	}
	return h, nil
}

// detectEADR reports whether the platform has at least one NVDIMM region
// and every region's persistence domain is the CPU cache.
func detectEADR(sysfs string) bool {
	files, _ := filepath.Glob(filepath.Join(sysfs, "bus/nd/devices/region*/persistence_domain"))
	if len(files) == 0 {
		return false
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimSpace(string(b)) != "cpu_cache" {
			return false
		}
	}
	return true
}

// lineSpan returns the first cache-line address and the number of lines
// that cover [p, p+n). n == 0 covers no line.
func lineSpan(a uintptr, n uintptr) (start uintptr, lines uintptr) {
	start = a &^ (cacheLine - 1)
	if n == 0 {
		return start, 0
	}
	end := (a + n + cacheLine - 1) &^ (cacheLine - 1)
	return start, (end - start) / cacheLine
}

// flushRange starts write-back of the lines covering [p, p+n) and returns
// how many lines it flushed. On the portable path it msyncs the pages and
// is complete on return.
func (h *hw) flushRange(p unsafe.Pointer, n uintptr) (int, error) {
	switch h.flush {
	case flushNone:
		return 0, nil
	case flushMsync:
		return 0, msyncRange(p, n)
	}
	start, lines := lineSpan(uintptr(p), n)
	if lines > 0 {
		flushLines(h.flush, start, lines)
	}
	return int(lines), nil
}

// copyNT copies src to dst with non-temporal stores and writes back the
// lines of an unaligned head or tail, which storeNT leaves as plain stores.
// Durable after drain. Returns the lines flushed.
func (h *hw) copyNT(dst, src unsafe.Pointer, n uintptr) (int, error) {
	if n == 0 {
		return 0, nil
	}
	storeNT(dst, src, n)
	if h.flush == flushMsync {
		return 0, msyncRange(dst, n)
	}
	flushed := 0
	a := uintptr(dst)
	if a&7 != 0 { // plain-stored head, within one line
		f, _ := h.flushRange(dst, 1)
		flushed += f
	}
	if e := a + n; e&7 != 0 && (a&7 == 0 || e&^(cacheLine-1) != a&^(cacheLine-1)) { // plain-stored tail
		f, _ := h.flushRange(unsafe.Add(dst, n-1), 1)
		flushed += f
	}
	return flushed, nil
}

var pageSize = uintptr(os.Getpagesize())

// msyncCalls and msyncBytes count msyncRange's calls and the bytes they
// were asked to cover, so that tests can see the portable path persist
// what it wrote (TestPortableAppendMsyncs).
var msyncCalls, msyncBytes atomic.Uint64

// msyncRange msyncs (MS_SYNC) the pages covering [p, p+n) of a mapping.
func msyncRange(p unsafe.Pointer, n uintptr) error {
	if n == 0 {
		return nil
	}
	msyncCalls.Add(1)
	msyncBytes.Add(uint64(n))
	off := uintptr(p) & (pageSize - 1)
	b := unsafe.Slice((*byte)(unsafe.Add(p, -int(off))), (off+n+pageSize-1)&^(pageSize-1))
	return unix.Msync(b, unix.MS_SYNC)
}
