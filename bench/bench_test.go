package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7, 7, 1, 100, 7}, 7},
	}
	for _, c := range cases {
		in := append([]float64(nil), c.in...)
		if got := median(in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("median modified its input: %v", in)
			}
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Buckets are contiguous and ordered, and every value's bucket
	// midpoint is within 1/64 of it.
	prev := -1
	for v := int64(0); v < 1<<22; v += 1 + v/97 {
		b := bucketOf(v)
		if b < prev || b > prev+1 && prev >= 0 && v < histExact {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		prev = b
		mid := bucketMid(b)
		if v > 0 && math.Abs(mid-float64(v))/float64(v) > 1.0/64 {
			t.Fatalf("value %d: bucket %d midpoint %v is off by more than 1/64", v, b, mid)
		}
	}
	if b := bucketOf(math.MaxInt64); b >= histBuckets {
		t.Fatalf("bucketOf(MaxInt64) = %d, beyond %d buckets", b, histBuckets)
	}
	if bucketOf(-5) != 0 {
		t.Fatal("a negative sample is not counted as 0")
	}
}

func TestHistogramPercentile(t *testing.T) {
	var h histogram
	if !math.IsNaN(h.percentile(99)) {
		t.Fatal("percentile of an empty histogram is not NaN")
	}
	// 1..1000 µs: p50 is 500 µs and p99 990 µs, within the buckets' 1/64.
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct{ p, want float64 }{{50, 500e3}, {99, 990e3}, {100, 1000e3}} {
		got := h.percentile(c.p)
		if math.Abs(got-c.want)/c.want > 1.0/64 {
			t.Errorf("p%v = %v, want %v within 1/64", c.p, got, c.want)
		}
	}
	var o histogram
	o.recordNS(5)
	h.merge(&o)
	if h.count() != 1001 || h.percentile(0.05) != 5 {
		t.Errorf("after merge: count %d, lowest %v", h.count(), h.percentile(0.05))
	}
}

func TestFormatting(t *testing.T) {
	cases := map[string]string{
		fmtNS(383):          "383 ns",
		fmtNS(97.4):         "97.4 ns",
		fmtNS(1234):         "1.23 µs",
		fmtNS(120e3):        "120 µs",
		fmtNS(6.8e9):        "6.80 s",
		fmtNS(math.NaN()):   "—",
		fmtRatio(0.256):     "0.26×",
		fmtRatio(12.3):      "12.3×",
		fmtMBps(1898.4):     "1898",
		fmtMBps(math.NaN()): "—",
		fmtDecade(1):        "10 ns",
		fmtDecade(3):        "1 µs",
		fmtDecade(8):        "100 ms",
		fmtDecade(9):        "1 s",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// fixedResults is a small run with known numbers: this log and a
// competitor on one filesystem, a skipped PMDK row, a failed cell.
func fixedResults() *results {
	pm := &system{Name: "pmwal", Mode: "cacheflush", FS: "tmpfs", Group: "a", Ref: true}
	other := &system{Name: "tidwall/wal", Mode: "fsync", FS: "tmpfs", Group: "a"}
	pmdk := &system{Name: "PMDK pmemlog", Mode: "PMEM_IS_PMEM_FORCE=1", FS: "tmpfs", Group: "a", Skip: pmdkSkip(errors.New("libpmemlog.so.1: cannot open"))}
	floor := &system{Name: "floor: pmem_memcpy_persist", Mode: "x", FS: "tmpfs", Group: "a", noOpen: true}
	wls := workloads(1 << 30)
	r := newResults([]*system{pm, pmdk, floor, other}, wls)
	r.LogBytes = 1 << 30
	r.Env = machine{CPU: "Test CPU <1>", Kernel: "6.1.0-test", GoVersion: "go1.26", CPUs: 2, Date: "2026-01-01 00:00 UTC", Settings: "fixed"}
	add := func(s *system, wl workload, ns ...float64) {
		for i, v := range ns {
			smp := &sample{nsPerOp: v, ops: 100}
			smp.hist.record(time.Duration(v))
			r.add(i, s, wl, smp)
		}
	}
	// By name, so that adding a workload does not move these.
	named := func(name string) workload {
		for _, wl := range wls {
			if wl.Name == name {
				return wl
			}
		}
		panic("no workload " + name)
	}
	add(pm, named("append-64"), 400, 380, 390)
	add(other, named("append-64"), 1900, 1600, 1700)
	add(floor, named("append-64"), 100, 130, 97)
	add(pm, named("open"), 6.8e9)
	add(other, named("open"), 120e6)
	r.fail(floor, named("read-seq"), errors.New("boom"))
	return r
}

func TestMarkdown(t *testing.T) {
	var buf bytes.Buffer
	if err := writeMarkdown(&buf, fixedResults()); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"- CPU: Test CPU <1> (2 CPUs)",
		"- Kernel: 6.1.0-test",
		"### Durable append, 64 B, 1 appender",
		"| pmwal (cacheflush) | tmpfs | 390 ns | 164 | ",
		"| tidwall/wal (fsync) | tmpfs | 1.70 µs | 37.6 | ",
		"| 4.36× |",
		"| floor: pmem_memcpy_persist (x) | tmpfs | 100 ns | 640 | ",
		"| 0.26× |",
		"| PMDK pmemlog (PMEM_IS_PMEM_FORCE=1) | tmpfs | — | — | — | — |",
		"### Open (recovery) of a 1 GiB log of 1024 B records",
		"| pmwal (cacheflush) | tmpfs | 6.80 s | 158 | ",
		"apt-get install -y libpmemlog-dev libpmem-dev",
		"read-seq, floor: pmem_memcpy_persist (x) on tmpfs: failed: boom",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	// The floor keeps no log: it has no open row.
	open := md[strings.Index(md, "### Open"):strings.Index(md, "### Sequential")]
	if strings.Contains(open, "floor") {
		t.Errorf("the open table has a floor row:\n%s", open)
	}
}

func TestSVG(t *testing.T) {
	var buf bytes.Buffer
	if err := writeSVG(&buf, fixedResults()); err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	// Well-formed XML, with the escaped CPU name and one bar per number.
	d := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if want := 1 + 5; rects != want { // background + 3 append bars + 2 open bars
		t.Errorf("chart has %d rects, want %d", rects, want)
	}
	if !strings.Contains(svg, "Test CPU &lt;1&gt;") || !strings.Contains(svg, "6.1.0-test") {
		t.Error("chart lacks the machine's CPU and kernel")
	}
}

func TestParseFlags(t *testing.T) {
	var out bytes.Buffer
	c, err := parseFlags(nil, &out)
	if err != nil || c.quick || c.reps != 5 || c.logMiB != 1024 {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	c, err = parseFlags([]string{"--quick", "--reps", "1", "--only", "append"}, &out)
	if err != nil || !c.quick || c.reps != 1 || c.only == nil {
		t.Fatalf("--quick --reps 1: %+v, %v", c, err)
	}
	for _, bad := range [][]string{{"--quick", "--full"}, {"--reps", "0"}, {"--only", "("}, {"--segment-mib", "5000"}, {"extra"}} {
		if _, err := parseFlags(bad, &out); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// shmTemp returns a temporary directory on /dev/shm, or under t.TempDir
// where that is missing.
func shmTemp(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pmwal-bench-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// smokeArgs is a tiny --quick run into out.
func smokeArgs(t *testing.T, out string) []string {
	return []string{"--quick", "--reps", "1", "--budget", "3ms", "--warmup", "1ms", "--log-mib", "2", "--segment-mib", "1",
		"--shm-dir", shmTemp(t), "--disk-dir", t.TempDir(), "--out", out}
}

// TestQuickRun runs every row once, briefly, and checks the files.
func TestQuickRun(t *testing.T) {
	out := t.TempDir()
	var log bytes.Buffer
	if err := run(smokeArgs(t, out), &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Durable append, 256 B, 8 appenders", "| pmwal (cacheflush) | tmpfs |", "| hashicorp/raft-wal (fsync) |", "skipped: no DAX filesystem"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	if strings.Contains(string(md), "failed:") {
		t.Errorf("a cell failed:\n%s", md)
	}
	for _, f := range []string{"chart.svg", "raw.csv"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if loadPMDK() == nil && strings.Contains(string(md), "| PMDK pmemlog (PMEM_IS_PMEM_FORCE=1) | tmpfs | — |") {
		t.Errorf("PMDK loads but its rows have no numbers:\n%s", md)
	}
}

// TestNoPMDKBuild builds the command without cgo, as on a machine without
// a C toolchain, and checks that it names the apt-get line and skips the
// PMDK rows instead of failing.
func TestNoPMDKBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	bin := filepath.Join(t.TempDir(), "bench-nopmdk")
	build := exec.Command(goTool, "build", "-tags", "nopmdk", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags nopmdk: %v\n%s", err, out)
	}
	out := t.TempDir()
	args := append(smokeArgs(t, out), "--only", "^append-64 ")
	stdout, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("bench without PMDK failed: %v\n%s", err, stdout)
	}
	if !strings.Contains(string(stdout), "apt-get install -y libpmemlog-dev libpmem-dev") {
		t.Errorf("output does not name the apt-get line:\n%s", stdout)
	}
	md, _ := os.ReadFile(filepath.Join(out, "results.md"))
	if !strings.Contains(string(md), "| PMDK pmemlog (PMEM_IS_PMEM_FORCE=1) | tmpfs | — |") ||
		!strings.Contains(string(md), "| pmwal (cacheflush) | tmpfs | ") {
		t.Errorf("results.md does not skip just the PMDK rows:\n%s", md)
	}
}
