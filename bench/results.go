package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machine describes where and how a run was made, for the report.
type machine struct {
	CPU       string // /proc/cpuinfo "model name"
	Kernel    string // uname -r
	GoVersion string
	CPUs      int
	Date      string
	Source    string // git describe of the working tree
	Versions  string // versions of the logs compared
	Settings  string // repetitions, budget, log size
	Command   string
}

// describeMachine gathers the machine's description; what it cannot read
// it reports as "unknown".
func describeMachine() machine {
	m := machine{CPU: "unknown", Kernel: "unknown", GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Source: "unknown"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if out, err := exec.Command("git", "-C", "..", "describe", "--always", "--dirty").Output(); err == nil {
		m.Source = strings.TrimSpace(string(out))
	}
	var vs []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/hashicorp/raft-wal", "github.com/tidwall/wal":
				vs = append(vs, d.Path+" "+d.Version)
			}
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "libpmemlog1").Output(); err == nil && len(out) > 0 {
		vs = append(vs, "libpmemlog1 "+strings.TrimSpace(string(out)))
	}
	m.Versions = strings.Join(vs, ", ")
	m.Command = "go run . " + strings.Join(os.Args[1:], " ")
	return m
}

// cellKey names one cell of the results.
type cellKey struct {
	sys *system
	wl  string
}

// cellResult accumulates one cell's repetitions.
type cellResult struct {
	ns   []float64 // ns/op of each repetition that succeeded
	ops  int64
	hist histogram
	errs []string
}

// rawSample is one repetition of one cell, for raw.csv.
type rawSample struct {
	rep int
	sys *system
	wl  string
	ns  float64
	ops int64
}

// results is a finished run.
type results struct {
	Systems   []*system
	Workloads []workload
	Env       machine
	Elapsed   time.Duration
	LogBytes  int64
	cells     map[cellKey]*cellResult
	raw       []rawSample
}

func newResults(systems []*system, wls []workload) *results {
	return &results{Systems: systems, Workloads: wls, cells: map[cellKey]*cellResult{}}
}

func (r *results) cell(s *system, wl workload) *cellResult {
	k := cellKey{s, wl.Name}
	c := r.cells[k]
	if c == nil {
		c = &cellResult{}
		r.cells[k] = c
	}
	return c
}

// add records one repetition of a cell.
func (r *results) add(rep int, s *system, wl workload, smp *sample) {
	c := r.cell(s, wl)
	c.ns = append(c.ns, smp.nsPerOp)
	c.ops += smp.ops
	c.hist.merge(&smp.hist)
	r.raw = append(r.raw, rawSample{rep: rep, sys: s, wl: wl.Name, ns: smp.nsPerOp, ops: smp.ops})
}

// fail records a repetition of a cell that failed.
func (r *results) fail(s *system, wl workload, err error) {
	c := r.cell(s, wl)
	c.errs = append(c.errs, err.Error())
}

// row is one line of a workload's table.
type row struct {
	Sys    *system
	Median float64 // ns per op; NaN when there is none
	MBps   float64
	P99    float64 // ns per call
	Ratio  float64 // Median over the reference row's Median in the same group
	Reps   int
	Note   string // why there are no numbers
}

// rows computes the table of one workload, in system order.
func (r *results) rows(wl workload) []row {
	var rows []row
	refs := map[string]float64{}
	for _, s := range r.Systems {
		if !s.supports(wl) {
			continue
		}
		rw := row{Sys: s, Median: math.NaN(), MBps: math.NaN(), P99: math.NaN(), Ratio: math.NaN()}
		c := r.cells[cellKey{s, wl.Name}]
		switch {
		case s.Skip != "":
			rw.Note = s.Skip
		case c == nil:
			rw.Note = "not run"
		case len(c.ns) == 0:
			rw.Note = "failed: " + c.errs[0]
		default:
			rw.Median = median(c.ns)
			rw.P99 = c.hist.percentile(99)
			rw.Reps = len(c.ns)
			bytes := float64(wl.Size)
			if wl.Kind == kindOpen {
				bytes = float64(r.LogBytes)
			}
			rw.MBps = bytes / rw.Median * 1e3
			if len(c.errs) > 0 {
				rw.Note = fmt.Sprintf("%d of %d repetitions failed: %s", len(c.errs), len(c.errs)+len(c.ns), c.errs[0])
			}
		}
		if s.Ref {
			refs[s.Group] = rw.Median
		}
		rows = append(rows, rw)
	}
	for i := range rows {
		if ref, ok := refs[rows[i].Sys.Group]; ok && ref > 0 {
			rows[i].Ratio = rows[i].Median / ref
		}
	}
	return rows
}

// fmtNS renders nanoseconds with a unit and three significant digits.
func fmtNS(ns float64) string {
	if math.IsNaN(ns) {
		return "—"
	}
	units := []struct {
		div  float64
		name string
	}{{1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}, {1, "ns"}}
	for _, u := range units {
		if ns >= u.div || u.div == 1 {
			return sig3(ns/u.div) + " " + u.name
		}
	}
	return ""
}

// sig3 formats v with three significant digits (no exponent).
func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// fmtMBps renders a throughput in MB/s (10^6 bytes per second).
func fmtMBps(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return sig3(v)
}

// fmtRatio renders a ratio against this log.
func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return sig3(v) + "×"
}
