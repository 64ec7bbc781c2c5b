package wal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// flushMapping maps a fresh file on /dev/shm (or the test's temporary
// directory) shared and writable, like a segment.
func flushMapping(t *testing.T, size int) []byte {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-flush-")
	if err != nil {
		dir = t.TempDir()
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	f, err := os.Create(filepath.Join(dir, "map"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

// The non-temporal copy must equal copy() for every size 0..8192 and every
// alignment 0..63 of source and destination, and touch nothing outside the
// destination range.
func TestStoreNTMatchesCopy(t *testing.T) {
	mem := flushMapping(t, 3*8192+256)
	src := make([]byte, 8192+128)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	h := hw{flush: defaultFlush(), ntMin: 0}
	check := func(size, sa, da int) {
		t.Helper()
		for i := range mem[:size+da+128] {
			mem[i] = 0xA5
		}
		dst := mem[64+da : 64+da+size]
		if size > 0 {
			h.copyNT(unsafe.Pointer(&dst[0]), unsafe.Pointer(&src[sa]), uintptr(size))
		}
		drain()
		if !bytes.Equal(dst, src[sa:sa+size]) {
			t.Fatalf("size %d src align %d dst align %d: copy differs", size, sa, da)
		}
		for _, b := range mem[:64+da] {
			if b != 0xA5 {
				t.Fatalf("size %d src align %d dst align %d: wrote before dst", size, sa, da)
			}
		}
		for _, b := range mem[64+da+size : 64+da+size+64] {
			if b != 0xA5 {
				t.Fatalf("size %d src align %d dst align %d: wrote past dst", size, sa, da)
			}
		}
	}
	// Every alignment pair at sizes around the code's thresholds...
	for _, size := range []int{0, 1, 7, 8, 9, 31, 32, 63, 64, 65, 127, 128, 159, 160, 161, 255, 256, 300, 1024, 4096, 8192} {
		for sa := 0; sa < 64; sa++ {
			for da := 0; da < 64; da++ {
				check(size, sa, da)
			}
		}
	}
	// ...and random sizes 0..8192 at random alignments.
	for i := 0; i < 3000; i++ {
		check(rng.IntN(8193), rng.IntN(64), rng.IntN(64))
	}
}

// lineSpan must cover exactly the lines a range dirties: none missed at
// either end, none extra.
func TestLineSpan(t *testing.T) {
	for _, tc := range []struct {
		addr, n     uintptr
		start, want uintptr
	}{
		{0, 0, 0, 0},
		{0, 1, 0, 1},
		{0, 64, 0, 1},
		{0, 65, 0, 2},
		{63, 1, 0, 1},
		{63, 2, 0, 2},
		{64, 64, 64, 1},
		{8, 96, 0, 2},
		{56, 96, 0, 3},
		{4096 - 8, 16, 4096 - 64, 2},
	} {
		start, lines := lineSpan(tc.addr, tc.n)
		if start != tc.start || lines != tc.want {
			t.Errorf("lineSpan(%d, %d) = %d, %d; want %d, %d", tc.addr, tc.n, start, lines, tc.start, tc.want)
		}
		// Brute force: the lines touched by the bytes.
		touched := map[uintptr]bool{}
		for b := tc.addr; b < tc.addr+tc.n; b++ {
			touched[b&^63] = true
		}
		if uintptr(len(touched)) != lines {
			t.Errorf("lineSpan(%d, %d): %d lines, bytes touch %d", tc.addr, tc.n, lines, len(touched))
		}
	}
}

// Every flush instruction the CPU has must run on a real shared mapping
// without fault, and leave the data intact.
func TestFlushVariantsOnMapping(t *testing.T) {
	mem := flushMapping(t, 1<<20)
	kinds := []int{flushCLWB, flushCLFLUSHOPT, flushCLFLUSH}
	ran := 0
	for _, k := range kinds {
		if !flushSupported(k) {
			t.Logf("%s: not supported here", flushNames[k])
			continue
		}
		ran++
		h := hw{flush: k, ntMin: -1}
		for i := range mem {
			mem[i] = byte(i * (k + 3))
		}
		n, err := h.flushRange(unsafe.Pointer(&mem[10]), uintptr(len(mem)-20))
		if err != nil {
			t.Fatalf("%s: %v", flushNames[k], err)
		}
		drain()
		if n != len(mem)/64 {
			t.Errorf("%s: flushed %d lines, want %d", flushNames[k], n, len(mem)/64)
		}
		for i := range mem {
			if mem[i] != byte(i*(k+3)) {
				t.Fatalf("%s: byte %d changed by the flush", flushNames[k], i)
			}
		}
	}
	if ran == 0 && defaultFlush() != flushMsync {
		t.Fatal("no flush instruction ran")
	}
}

// eADR is detected from a sysfs tree: only when there is a region and every
// region's persistence domain is the CPU cache.
func TestDetectEADR(t *testing.T) {
	for _, tc := range []struct {
		name    string
		domains []string
		want    bool
	}{
		{"no regions", nil, false},
		{"one cpu_cache", []string{"cpu_cache"}, true},
		{"all cpu_cache", []string{"cpu_cache\n", "cpu_cache\n"}, true},
		{"memory_controller", []string{"memory_controller"}, false},
		{"mixed", []string{"cpu_cache", "memory_controller"}, false},
		{"empty file", []string{""}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for i, d := range tc.domains {
				dir := filepath.Join(root, "bus/nd/devices", fmt.Sprintf("region%d", i))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "persistence_domain"), []byte(d), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("WAL_EADR", "")
			if got := detectEADR(root); got != tc.want {
				t.Fatalf("detectEADR = %v, want %v", got, tc.want)
			}
			h, err := resolveHW(root)
			if err != nil {
				t.Fatal(err)
			}
			if h.eadr != tc.want || (tc.want && defaultFlush() != flushMsync && h.flush != flushNone) {
				t.Fatalf("resolveHW: eadr %v flush %s", h.eadr, flushNames[h.flush])
			}
			// Forced either way over the same tree: off keeps the CPU's
			// write-back, on needs none (but msync stays msync).
			t.Setenv("WAL_EADR", "0")
			if h, err := resolveHW(root); err != nil || h.eadr || h.flush != defaultFlush() {
				t.Fatalf("WAL_EADR=0: eadr %v flush %s, err %v; want no eADR and %s", h.eadr, flushNames[h.flush], err, flushNames[defaultFlush()])
			}
			t.Setenv("WAL_EADR", "1")
			want := flushNone
			if defaultFlush() == flushMsync {
				want = flushMsync
			}
			if h, err := resolveHW(root); err != nil || !h.eadr || h.flush != want {
				t.Fatalf("WAL_EADR=1: eadr %v flush %s, err %v; want eADR and %s", h.eadr, flushNames[h.flush], err, flushNames[want])
			}
		})
	}
}

// The write-back instruction from CPUID's bits, in the order of
// preference, and msync where the CPU has none of them.
func TestPickFlush(t *testing.T) {
	for _, tc := range []struct {
		clwb, clflushopt, clflush bool
		want                      int
	}{
		{true, true, true, flushCLWB},
		{true, false, false, flushCLWB},
		{false, true, true, flushCLFLUSHOPT},
		{false, true, false, flushCLFLUSHOPT},
		{false, false, true, flushCLFLUSH},
		{false, false, false, flushMsync},
	} {
		if got := pickFlush(tc.clwb, tc.clflushopt, tc.clflush); got != tc.want {
			t.Errorf("pickFlush(clwb %v, clflushopt %v, clflush %v) = %s, want %s", tc.clwb, tc.clflushopt, tc.clflush, flushNames[got], flushNames[tc.want])
		}
	}
}

// The environment overrides every choice, and rejects what it cannot do.
func TestResolveHWEnvironment(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		env     map[string]string
		wantErr bool
		check   func(h hw) bool
	}{
		{map[string]string{"WAL_EADR": "1"}, false, func(h hw) bool { return h.eadr }},
		{map[string]string{"WAL_EADR": "0"}, false, func(h hw) bool { return !h.eadr }},
		{map[string]string{"WAL_EADR": "maybe"}, true, nil},
		{map[string]string{"WAL_FLUSH": "bogus"}, true, nil},
		{map[string]string{"WAL_NT_THRESHOLD": "off"}, false, func(h hw) bool { return h.ntMin == -1 }},
		{map[string]string{"WAL_NT_THRESHOLD": "-5"}, true, nil},
		{map[string]string{"WAL_NT_THRESHOLD": "12x"}, true, nil},
		{map[string]string{"WAL_NT_THRESHOLD": "512"}, false, func(h hw) bool { return h.ntMin == 512 || !ntSupported() }},
		{map[string]string{"WAL_PUBLISH": "xchg"}, false, func(h hw) bool { return !h.plainPublish }},
		{map[string]string{"WAL_PUBLISH": "XCHG"}, false, func(h hw) bool { return !h.plainPublish }},
		{map[string]string{"WAL_PUBLISH": "lock"}, true, nil},
		{map[string]string{"WAL_RESERVE": "cas"}, false, func(h hw) bool { return !h.bias && h.describe().Reserve == "cas" }},
		{map[string]string{"WAL_RESERVE": "CAS"}, false, func(h hw) bool { return !h.bias }},
		{map[string]string{"WAL_RESERVE": "lock"}, true, nil},
		// Biased reservation needs the plain-store publication.
		{map[string]string{"WAL_PUBLISH": "xchg", "WAL_RESERVE": "biased"}, true, nil},
		{map[string]string{"WAL_PUBLISH": "xchg"}, false, func(h hw) bool { return !h.bias }},
		// The default: the plain store and biased reservation wherever
		// they are safe.
		{map[string]string{}, false, func(h hw) bool {
			return h.plainPublish == (plainStoreRelease && !raceEnabled && membarrierOK()) && h.describe().Publish == map[bool]string{true: "store", false: "xchg"}[h.plainPublish] &&
				h.bias == h.plainPublish && h.describe().Reserve == map[bool]string{true: "biased", false: "cas"}[h.bias]
		}},
	} {
		for _, k := range []string{"WAL_EADR", "WAL_FLUSH", "WAL_NT_THRESHOLD", "WAL_PUBLISH", "WAL_RESERVE"} {
			t.Setenv(k, tc.env[k])
		}
		h, err := resolveHW(root)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%v: err %v, want error %v", tc.env, err, tc.wantErr)
		}
		if err == nil && !tc.check(h) {
			t.Fatalf("%v: got %+v", tc.env, h)
		}
	}
	// The plain store only where it is safe: with -race the detector must
	// see each publication, and tailers need membarrier.
	t.Setenv("WAL_PUBLISH", "store")
	h, err := resolveHW(root)
	if ok := plainStoreRelease && !raceEnabled && membarrierOK(); ok != (err == nil) || err == nil && !h.plainPublish {
		t.Fatalf("WAL_PUBLISH=store: got %+v, err %v; want it to be taken only where it is safe (%v)", h, err, ok)
	}
	if raceEnabled && err == nil {
		t.Fatal("WAL_PUBLISH=store accepted in a -race build")
	}
	t.Setenv("WAL_PUBLISH", "")
	t.Setenv("WAL_RESERVE", "biased")
	h, err = resolveHW(root)
	if ok := plainStoreRelease && !raceEnabled && membarrierOK(); ok != (err == nil) || err == nil && !h.bias {
		t.Fatalf("WAL_RESERVE=biased: got %+v, err %v; want it to be taken only where it is safe (%v)", h, err, ok)
	}
	t.Setenv("WAL_RESERVE", "")
	for _, k := range []int{flushCLWB, flushCLFLUSHOPT, flushCLFLUSH} {
		t.Setenv("WAL_FLUSH", flushNames[k])
		h, err := resolveHW(root)
		if flushSupported(k) != (err == nil) {
			t.Fatalf("WAL_FLUSH=%s: err %v, supported %v", flushNames[k], err, flushSupported(k))
		}
		if err == nil && h.flush != k {
			t.Fatalf("WAL_FLUSH=%s: got %s", flushNames[k], flushNames[h.flush])
		}
	}
}

// The append path flushes exactly the lines each append dirtied and no
// other: with plain stores, the lines of each record (a batch's shared
// lines once); with non-temporal stores of aligned records, none.
func TestAppendFlushesNoRedundantLine(t *testing.T) {
	if defaultFlush() == flushMsync {
		t.Skip("portable build: flushes are msyncs")
	}
	for _, nt := range []string{"off", "0"} {
		t.Run("nt="+nt, func(t *testing.T) {
			t.Setenv("WAL_PERSIST", "")
			t.Setenv("WAL_EADR", "0")
			t.Setenv("WAL_NT_THRESHOLD", nt)
			dir, err := os.MkdirTemp("/dev/shm", "pmwal-flushcount-")
			if err != nil {
				t.Skip("no /dev/shm")
			}
			defer os.RemoveAll(dir)
			l, err := Open(dir, &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			mem := l.segs[0].mem
			want := uint64(0)
			lines := func(off, n int) uint64 {
				_, k := lineSpan(uintptr(unsafe.Pointer(&mem[off])), uintptr(n))
				return uint64(k)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			for i := 0; i < 500; i++ {
				data := make([]byte, rng.IntN(300))
				off := testTail(l)
				if _, err := l.Append(data); err != nil {
					t.Fatal(err)
				}
				if nt == "off" {
					want += lines(off, recSize(len(data)))
				}
			}
			batch := make([][]byte, 20)
			total := 0
			for i := range batch {
				batch[i] = make([]byte, 1+rng.IntN(100))
				total += recSize(len(batch[i]))
			}
			off := testTail(l)
			if _, err := l.AppendBatch(batch); err != nil {
				t.Fatal(err)
			}
			if nt == "off" {
				want += lines(off, total)
			}
			l.mu.Lock()
			l.fastOff()
			got := l.flushedLines
			l.mu.Unlock()
			if got != want {
				t.Fatalf("flushed %d lines, the appends dirtied %d", got, want)
			}
		})
	}
}

// Appends through every flush instruction and both store kinds round-trip
// and survive reopen.
func TestAppendEveryFlushVariant(t *testing.T) {
	for _, k := range []int{flushCLWB, flushCLFLUSHOPT, flushCLFLUSH} {
		if !flushSupported(k) {
			continue
		}
		for _, nt := range []string{"off", "0", "128"} {
			t.Run(flushNames[k]+"/nt="+nt, func(t *testing.T) {
				t.Setenv("WAL_PERSIST", "")
				t.Setenv("WAL_FLUSH", flushNames[k])
				t.Setenv("WAL_NT_THRESHOLD", nt)
				dir, err := os.MkdirTemp("/dev/shm", "pmwal-variant-")
				if err != nil {
					dir = t.TempDir()
				} else {
					defer os.RemoveAll(dir)
				}
				opts := &Options{SegmentSize: 1 << 20, Persist: PersistCacheFlush}
				l, err := Open(dir, opts)
				if err != nil {
					t.Fatal(err)
				}
				if got := l.Hardware().Flush; got != flushNames[k] {
					t.Fatalf("Hardware().Flush = %s", got)
				}
				rng := rand.New(rand.NewPCG(5, uint64(k)))
				var want [][]byte
				for i := 0; i < 300; i++ {
					data := make([]byte, rng.IntN(700))
					for j := range data {
						data[j] = byte(rng.Uint32())
					}
					if i%10 == 0 {
						if _, err := l.AppendBatch([][]byte{data, data[:len(data)/2]}); err != nil {
							t.Fatal(err)
						}
						want = append(want, data, data[:len(data)/2])
						continue
					}
					if _, err := l.Append(data); err != nil {
						t.Fatal(err)
					}
					want = append(want, data)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				if l, err = Open(dir, opts); err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				if l.LastIndex() != uint64(len(want)) {
					t.Fatalf("LastIndex %d, want %d", l.LastIndex(), len(want))
				}
				for i, w := range want {
					got, err := l.Read(uint64(i + 1))
					if err != nil || !bytes.Equal(got, w) {
						t.Fatalf("record %d: %v", i+1, err)
					}
				}
			})
		}
	}
}

// testTail is the next free offset in the active segment, with what the
// fast path reserved counted in.
func testTail(l *Log) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.catchUp()
	return l.tail
}

// On the portable path (purego builds, other architectures) a
// cache-flush log has no cache-line instructions, and every append must
// msync what it wrote, never skip it: each Append and AppendBatch here is
// followed by at least one msync, asked to cover at least its records'
// bytes.
func TestPortableAppendMsyncs(t *testing.T) {
	t.Setenv("WAL_PERSIST", "")
	l, err := Open(t.TempDir(), &Options{Persist: PersistCacheFlush, SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.hw.flush != flushMsync {
		t.Skipf("this build writes back with %s (TestAppendFlushesNoRedundantLine covers it)", flushNames[l.hw.flush])
	}
	benchSettle(l) // no background msync of a segment being prepared
	check := func(what string, bytes int, do func() error) {
		t.Helper()
		c0, b0 := msyncCalls.Load(), msyncBytes.Load()
		if err := do(); err != nil {
			t.Fatal(err)
		}
		if c, b := msyncCalls.Load()-c0, msyncBytes.Load()-b0; c == 0 || b < uint64(bytes) {
			t.Fatalf("%s: %d msyncs covering %d bytes, want at least one covering %d", what, c, b, bytes)
		}
	}
	for _, n := range []int{0, 1, 64, 100, 4096, 5000} {
		check(fmt.Sprintf("Append of %d bytes", n), recSize(n), func() error {
			_, err := l.Append(make([]byte, n))
			return err
		})
	}
	batch := [][]byte{make([]byte, 10), nil, make([]byte, 300)}
	check("AppendBatch", recSize(10)+recSize(0)+recSize(300), func() error {
		_, err := l.AppendBatch(batch)
		return err
	})
}

// WAL_NT_THRESHOLD=calibrate measures the crossover on this CPU (as the
// default does on CPUs other than AMD's): one of the candidate sizes, 0
// or -1, never anything else, the same at every Open, and -1 where the
// build has no non-temporal stores. calibrateNT runs without a fault with
// every write-back instruction this CPU has. Which size wins is a timing,
// reported here and measured in BenchmarkBarePersist, not asserted.
func TestCalibrateNT(t *testing.T) {
	valid := map[int]bool{-1: true, 0: true}
	for _, n := range ntCandidates[1:] {
		valid[n] = true
	}
	t.Setenv("WAL_NT_THRESHOLD", "calibrate")
	root := t.TempDir()
	h, err := resolveHW(root)
	if err != nil {
		t.Fatal(err)
	}
	if !valid[h.ntMin] || (!ntSupported() && h.ntMin != -1) {
		t.Fatalf("WAL_NT_THRESHOLD=calibrate gave %d", h.ntMin)
	}
	if h2, err := resolveHW(root); err != nil || h2.ntMin != h.ntMin {
		t.Fatalf("a second resolve gave %d (err %v), the first %d: calibrated once per process", h2.ntMin, err, h.ntMin)
	}
	t.Logf("calibrated threshold with %s: %d", flushNames[defaultFlush()], h.ntMin)
	for _, k := range []int{flushCLWB, flushCLFLUSHOPT, flushCLFLUSH} {
		if !flushSupported(k) {
			continue
		}
		if got := calibrateNT(k); !valid[got] {
			t.Fatalf("calibrateNT(%s) = %d", flushNames[k], got)
		} else {
			t.Logf("calibrateNT(%s) = %d", flushNames[k], got)
		}
	}
	if got := calibrateNT(flushMsync); got != -1 {
		t.Fatalf("calibrateNT(msync) = %d, want -1", got)
	}
}
