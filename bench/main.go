// Command bench measures this log (github.com/pmwal/wal) against PMDK's
// libpmemlog, the libpmem floor (pmem_memcpy_persist), hashicorp/raft-wal
// and tidwall/wal, on the same workloads and filesystems, interleaved and
// repeated within one run. It writes results.md, chart.svg and raw.csv to
// the output directory (results/ by default). See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/pmwal/wal"
)

// config is the command's settings.
type config struct {
	quick   bool
	reps    int
	budget  time.Duration
	warmup  time.Duration
	logMiB  int64
	segMiB  int64 // this log's segment size; 0: its default
	shmDir  string
	diskDir string
	daxDir  string
	outDir  string
	only    *regexp.Regexp // nil: everything
	verbose bool
	args    []string // the command line, for the report
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parseFlags turns the command line into a config.
func parseFlags(args []string, out io.Writer) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	c := &config{args: args}
	var full bool
	var budget, warmup time.Duration
	var reps int
	var logMiB int64
	var only string
	fs.BoolVar(&c.quick, "quick", false, "short run for CI: 2 repetitions, 25 ms per cell, a 16 MiB log for open and read, 4 MiB segments")
	fs.BoolVar(&full, "full", false, "the published run (the default): 5 repetitions, 200 ms per cell, a 1 GiB log, default segments")
	fs.IntVar(&reps, "reps", -1, "repetitions (overrides --quick/--full)")
	fs.DurationVar(&budget, "budget", 0, "measured time per cell and repetition (overrides --quick/--full)")
	fs.DurationVar(&warmup, "warmup", -1, "unmeasured appends before each append cell (overrides --quick/--full)")
	fs.Int64Var(&logMiB, "log-mib", 0, "size of the log the open and read workloads use, in MiB (overrides --quick/--full)")
	var segMiB int64 = -1
	fs.Int64Var(&segMiB, "segment-mib", -1, "this log's SegmentSize in MiB, 0 for its default of 64 (overrides --quick/--full)")
	fs.StringVar(&c.shmDir, "shm-dir", "/dev/shm", "tmpfs directory: this log with cache flush, PMDK with PMEM_IS_PMEM_FORCE=1, the fsync logs")
	fs.StringVar(&c.diskDir, "disk-dir", "/var/tmp", "disk directory: this log with msync, the fsync logs")
	fs.StringVar(&c.daxDir, "dax-dir", "", "directory on a DAX filesystem for this log with MAP_SYNC (default: the first mount with -o dax, if any)")
	fs.StringVar(&c.outDir, "out", "results", "directory for results.md, chart.svg and raw.csv")
	fs.StringVar(&only, "only", "", "regular expression: run only the cells whose \"workload system/mode/fs\" matches, e.g. 'append-64 pmwal/' or 'tmpfs$'")
	fs.BoolVar(&c.verbose, "v", false, "print every cell as it runs")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.quick && full {
		return nil, errors.New("--quick and --full exclude each other")
	}
	if c.quick {
		c.reps, c.budget, c.warmup, c.logMiB, c.segMiB = 2, 25*time.Millisecond, 5*time.Millisecond, 16, 4
	} else {
		c.reps, c.budget, c.warmup, c.logMiB, c.segMiB = 5, 200*time.Millisecond, 50*time.Millisecond, 1024, 0
	}
	if reps >= 0 {
		c.reps = reps
	}
	if budget != 0 {
		c.budget = budget
	}
	if warmup >= 0 {
		c.warmup = warmup
	}
	if logMiB != 0 {
		c.logMiB = logMiB
	}
	if segMiB >= 0 {
		c.segMiB = segMiB
	}
	switch {
	case c.reps < 1:
		return nil, fmt.Errorf("--reps %d: want at least 1", c.reps)
	case c.budget <= 0:
		return nil, fmt.Errorf("--budget %v: want a positive duration", c.budget)
	case c.segMiB != 0 && (c.segMiB < 1 || c.segMiB >= 4096):
		return nil, fmt.Errorf("--segment-mib %d: want 0 (default) or 1 to 4095", c.segMiB)
	case c.logMiB < 1:
		return nil, fmt.Errorf("--log-mib %d: want at least 1", c.logMiB)
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return nil, fmt.Errorf("--only: %w", err)
		}
		c.only = re
	}
	return c, nil
}

// run is the command: parse flags, set up the systems, measure, report.
func run(args []string, out io.Writer) error {
	c, err := parseFlags(args, out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	// WAL_PERSIST would override the mode each row asks for.
	if v := os.Getenv("WAL_PERSIST"); v != "" {
		fmt.Fprintf(out, "note: ignoring WAL_PERSIST=%s; each row sets its own mode\n", v)
		os.Unsetenv("WAL_PERSIST")
	}
	if err := os.MkdirAll(c.outDir, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	env := describeMachine()
	fmt.Fprintf(out, "pmwal bench: %s, kernel %s, %s, %d CPUs\n", env.CPU, env.Kernel, env.GoVersion, env.CPUs)
	b, err := setup(c, out)
	if err != nil {
		return err
	}
	defer b.cleanup()
	// An interrupted run removes its logs (gigabytes of tmpfs) on the way out.
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer func() { signal.Stop(sig); close(done) }()
	go func() {
		select {
		case <-sig:
			fmt.Fprintln(os.Stderr, "bench: interrupted; removing the work directories")
			b.cleanup()
			os.Exit(130)
		case <-done:
		}
	}()
	res := b.measure(out)
	res.Env = env
	res.Env.Settings = c.describe()
	if err := writeOutputs(c.outDir, res); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := writeMarkdown(out, res); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nwrote %s/results.md, %s/chart.svg, %s/raw.csv\n", c.outDir, c.outDir, c.outDir)
	return nil
}

// describe renders the settings for the report.
func (c *config) describe() string {
	mode := "full"
	if c.quick {
		mode = "quick"
	}
	seg := "default (64 MiB) segments"
	if c.segMiB > 0 {
		seg = fmt.Sprintf("%d MiB segments", c.segMiB)
	}
	return fmt.Sprintf("%s: %d repetitions, %v measured per cell after %v warm-up, %d MiB log for open/read, pmwal with %s",
		mode, c.reps, c.budget, c.warmup, c.logMiB, seg)
}

// system is one row: a log implementation, its persistence mode, and the
// filesystem it runs on.
type system struct {
	Name  string // e.g. "pmwal", "raft-wal"
	Mode  string // how appends are made durable
	FS    string // filesystem type of Dir, e.g. "tmpfs"
	Dir   string // where its logs live
	Ref   bool   // this log: the reference for the ratios of its filesystem group
	Group string // rows are compared within a group (one directory)
	Skip  string // non-empty: why the row has no numbers
	drv   driver
	// noOpen: the system keeps no log to recover (the floor).
	noOpen bool
	// bigDir holds the prebuilt log for the open and read workloads.
	bigDir string
}

// Label is the row's name in the table.
func (s *system) Label() string { return s.Name + " (" + s.Mode + ")" }

// Key identifies the row in raw.csv.
func (s *system) Key() string { return s.Name + "/" + s.Mode + "/" + s.FS }

// supports reports whether the workload applies to the system.
func (s *system) supports(wl workload) bool { return !(s.noOpen && wl.Kind == kindOpen) }

// bench is a run in progress.
type bench struct {
	c        *config
	systems  []*system
	wls      []workload
	tmpDirs  []string
	logBytes int64
}

// setup resolves the directories, loads PMDK, and builds the prebuilt log
// of each system that recovers or reads one.
func setup(c *config, out io.Writer) (*bench, error) {
	b := &bench{c: c, logBytes: c.logMiB << 20}
	b.wls = workloads(b.logBytes)
	mk := func(base string) (string, string, error) {
		m := findMount(base)
		dir, err := os.MkdirTemp(base, "pmwal-bench-")
		if err != nil {
			return "", "", fmt.Errorf("work directory under %s: %w", base, err)
		}
		b.tmpDirs = append(b.tmpDirs, dir)
		return dir, m.FSType, nil
	}
	shm, shmFS, err := mk(c.shmDir)
	if err != nil {
		return nil, err
	}
	disk, diskFS, err := mk(c.diskDir)
	if err != nil {
		b.cleanup()
		return nil, err
	}
	pmdkSkipReason := ""
	if err := loadPMDK(); err != nil {
		pmdkSkipReason = pmdkSkip(err)
		fmt.Fprintf(out, "PMDK rows %s\n", pmdkSkipReason)
	}
	b.systems = []*system{
		{Name: "pmwal", Mode: "cacheflush", FS: shmFS, Dir: shm, Ref: true, drv: pmwalDriver{wal.PersistCacheFlush, c.segMiB << 20}},
		{Name: "PMDK pmemlog", Mode: "PMEM_IS_PMEM_FORCE=1", FS: shmFS, Dir: shm, drv: pmemlogDriver{}, Skip: pmdkSkipReason},
		{Name: "floor: pmem_memcpy_persist", Mode: "PMEM_IS_PMEM_FORCE=1", FS: shmFS, Dir: shm, drv: floorDriver{}, noOpen: true, Skip: pmdkSkipReason},
		{Name: "hashicorp/raft-wal", Mode: "fsync", FS: shmFS, Dir: shm, drv: raftWALDriver{}},
		{Name: "tidwall/wal", Mode: "fsync", FS: shmFS, Dir: shm, drv: tidwallDriver{}},
		{Name: "pmwal", Mode: "msync", FS: diskFS, Dir: disk, Ref: true, drv: pmwalDriver{wal.PersistMsync, c.segMiB << 20}},
		{Name: "hashicorp/raft-wal", Mode: "fsync", FS: diskFS, Dir: disk, drv: raftWALDriver{}},
		{Name: "tidwall/wal", Mode: "fsync", FS: diskFS, Dir: disk, drv: tidwallDriver{}},
	}
	for _, s := range b.systems {
		s.Group = s.Dir
	}
	b.systems = append(b.systems, b.daxSystem(out))
	// Build the prebuilt logs, one system at a time.
	if b.needBig() {
		start := time.Now()
		for _, s := range b.systems {
			if !b.needsBig(s) {
				continue
			}
			t := time.Now()
			if err := b.build(s); err != nil {
				s.Skip = fmt.Sprintf("skipped: building the %s log failed: %v", fmtBytes(b.logBytes), err)
				fmt.Fprintf(out, "%s on %s: %s\n", s.Label(), s.FS, s.Skip)
				continue
			}
			if c.verbose {
				fmt.Fprintf(out, "built %s log for %s on %s in %v\n", fmtBytes(b.logBytes), s.Label(), s.FS, time.Since(t).Round(time.Millisecond))
			}
		}
		fmt.Fprintf(out, "prebuilt the %s logs in %v\n", fmtBytes(b.logBytes), time.Since(start).Round(time.Millisecond))
	}
	return b, nil
}

// daxSystem returns the MAP_SYNC row: on --dax-dir, or the first mount
// with the dax option, or skipped.
func (b *bench) daxSystem(out io.Writer) *system {
	s := &system{Name: "pmwal", Mode: "dax (MAP_SYNC)", FS: "dax", Ref: true, drv: pmwalDriver{wal.PersistDAX, b.c.segMiB << 20}}
	base := b.c.daxDir
	if base == "" {
		base = findDAXMount()
	}
	if base == "" {
		s.Skip = "skipped: no DAX filesystem (none is mounted with -o dax; pass --dax-dir)"
		fmt.Fprintf(out, "pmwal dax rows %s\n", s.Skip)
		return s
	}
	dir, err := os.MkdirTemp(base, "pmwal-bench-")
	if err != nil {
		s.Skip = fmt.Sprintf("skipped: %v", err)
		return s
	}
	b.tmpDirs = append(b.tmpDirs, dir)
	s.Dir, s.Group, s.FS = dir, dir, findMount(base).FSType+" dax"
	probe, err := s.drv.create(dir + "/probe")
	if err != nil {
		if errors.Is(err, wal.ErrNotDAX) {
			s.Skip = fmt.Sprintf("skipped: no DAX filesystem (MAP_SYNC refused on %s)", base)
		} else {
			s.Skip = fmt.Sprintf("skipped: %v", err)
		}
		fmt.Fprintf(out, "pmwal dax rows %s\n", s.Skip)
		return s
	}
	probe.close()
	os.RemoveAll(dir + "/probe")
	return s
}

// selected reports whether the cell (s, wl) is to run.
func (b *bench) selected(s *system, wl workload) bool {
	if s.Skip != "" || !s.supports(wl) {
		return false
	}
	re := b.c.only
	return re == nil || re.MatchString(wl.Name+" "+s.Key())
}

// needsBig reports whether s runs an open or read cell.
func (b *bench) needsBig(s *system) bool {
	for _, wl := range b.wls {
		if wl.Kind != kindAppend && b.selected(s, wl) {
			return true
		}
	}
	return false
}

func (b *bench) needBig() bool {
	for _, s := range b.systems {
		if b.needsBig(s) {
			return true
		}
	}
	return false
}

// sizedCreator is a driver whose logs have a fixed capacity (a PMDK pool,
// the floor's mapping): the prebuilt log needs one of that size.
type sizedCreator interface {
	createSized(dir string, total int64) (store, error)
}

// build writes s's prebuilt log of b.logBytes of bigRecord-byte records.
func (b *bench) build(s *system) error {
	dir, err := os.MkdirTemp(s.Dir, "big-")
	if err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	var st store
	if sc, ok := s.drv.(sizedCreator); ok {
		st, err = sc.createSized(dir, b.logBytes)
	} else {
		st, err = s.drv.create(dir)
	}
	if err != nil {
		return err
	}
	err = st.fill(b.logBytes, bigRecord)
	if cerr := st.close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return err
	}
	s.bigDir = dir
	return nil
}

// cleanup removes every directory the run made.
func (b *bench) cleanup() {
	for _, d := range b.tmpDirs {
		os.RemoveAll(d)
	}
}

// cell is one (system, workload) pair.
type cell struct {
	sys *system
	wl  workload
}

// measure runs every selected cell once per repetition, in an order
// rotated by a different offset each repetition, and collects the samples.
func (b *bench) measure(out io.Writer) *results {
	// The open and read workloads of a system share one cell: the log is
	// opened (timed) and then read, so the slow opens happen once.
	var cells []cell
	for _, wl := range b.wls {
		for _, s := range b.systems {
			if wl.Kind == kindRead && b.selected(s, b.workload(kindOpen)) {
				continue
			}
			if b.selected(s, wl) {
				cells = append(cells, cell{s, wl})
			}
		}
	}
	res := newResults(b.systems, b.wls)
	res.LogBytes = b.logBytes
	cc := cellConfig{budget: b.c.budget, warmup: b.c.warmup, settleMax: 3 * time.Second}
	start := time.Now()
	for rep := range b.c.reps {
		off := 0
		if len(cells) > 0 {
			off = rep * len(cells) / b.c.reps
		}
		for i := range cells {
			cl := cells[(off+i)%len(cells)]
			t := time.Now()
			smps, err := b.runCell(cl, cc)
			if err != nil {
				res.fail(cl.sys, cl.wl, err)
				fmt.Fprintf(out, "rep %d: %s on %s, %s: %v\n", rep+1, cl.sys.Label(), cl.sys.FS, cl.wl.Name, err)
				continue
			}
			for _, ws := range smps {
				res.add(rep, cl.sys, ws.wl, ws.s)
				if b.c.verbose {
					fmt.Fprintf(out, "rep %d: %-14s %-45s %14.1f ns/op (%d ops, cell %v)\n", rep+1, ws.wl.Name,
						cl.sys.Label()+" "+cl.sys.FS, ws.s.nsPerOp, ws.s.ops, time.Since(t).Round(time.Millisecond))
				}
			}
		}
		fmt.Fprintf(out, "repetition %d/%d done, %v elapsed\n", rep+1, b.c.reps, time.Since(start).Round(time.Second))
	}
	res.Elapsed = time.Since(start)
	return res
}

// workload returns the first workload of kind k.
func (b *bench) workload(k kind) workload {
	for _, wl := range b.wls {
		if wl.Kind == k {
			return wl
		}
	}
	return workload{Kind: k}
}

// wlSample is a sample of one workload.
type wlSample struct {
	wl workload
	s  *sample
}

// runCell measures one cell once; an open cell also yields the read
// workload's sample when that is selected.
func (b *bench) runCell(cl cell, cc cellConfig) ([]wlSample, error) {
	if cl.wl.Kind == kindAppend {
		s, err := runAppend(cl.sys.drv, cl.sys.Dir, cl.wl, cc)
		if err != nil {
			return nil, err
		}
		return []wlSample{{cl.wl, s}}, nil
	}
	openWL, readWL := b.workload(kindOpen), b.workload(kindRead)
	timeOpen := cl.wl.Kind == kindOpen
	doRead := b.selected(cl.sys, readWL)
	open, read, err := runOpenRead(cl.sys.drv, cl.sys.bigDir, readWL, timeOpen, doRead, cc)
	if err != nil {
		return nil, err
	}
	var out []wlSample
	if open != nil {
		out = append(out, wlSample{openWL, open})
	}
	if read != nil {
		out = append(out, wlSample{readWL, read})
	}
	return out, nil
}

// mount is one line of /proc/mounts.
type mount struct {
	Dir, FSType, Options string
}

// readMounts parses /proc/mounts; it returns nothing where that is missing.
func readMounts() []mount {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil
	}
	var ms []mount
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			ms = append(ms, mount{Dir: unescapeMount(f[1]), FSType: f[2], Options: f[3]})
		}
	}
	return ms
}

// unescapeMount undoes the octal escapes of /proc/mounts (\040 for space).
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// findMount returns the mount holding path (the longest matching mount
// point), or one with FSType "unknown".
func findMount(path string) mount {
	best := mount{FSType: "unknown"}
	for _, m := range readMounts() {
		if (path == m.Dir || strings.HasPrefix(path, strings.TrimSuffix(m.Dir, "/")+"/")) && len(m.Dir) >= len(best.Dir) {
			best = m
		}
	}
	return best
}

// findDAXMount returns the first writable mount with the dax option.
func findDAXMount() string {
	for _, m := range readMounts() {
		for _, o := range strings.Split(m.Options, ",") {
			if o == "dax" || o == "dax=always" {
				return m.Dir
			}
		}
	}
	return ""
}
